"""Everything the artist reads fits at Blender's default sizes: no credits figure is ever cut.

The panels, lists and dialogs are drawn into a recording layout that knows the width Blender gives
each label (splits, rows, boxes), and each text is measured with Blender's own font (`blf`, in the
real bpy) at UI scale 1.0 and 1.25. The sidebar opens 280 px wide (UI scale 1, Blender 4.3 at
1600×900 and 1920×1080: the sidebar does not grow with the window); "wide" is a sidebar an artist
dragged to 500 px.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from support import blender
from support.layout import RecordingLayout

from act3_credits import widgets
from act3_credits.core.contract import Job, JobShot
from act3_credits.core.pricing import DEFAULT_RATE_CARD as CARD
from act3_credits.core.shots import Account, Shot, estimate
from act3_credits.core.state import Credits, HistoryRow, State
from act3_credits.core.vocabulary import Status
from act3_credits.credits import draw as credits_draw
from act3_credits.generate import draw

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()
import blf  # noqa: E402  (Blender's font module comes with bpy)

DEFAULT_SIDEBAR = 280  # the 3D View sidebar as Blender opens it, px at UI scale 1
WIDE_SIDEBAR = 500
PANEL_MARGINS = 52  # its tabs and a panel's margins
LIST_MARGINS = 70  # and a list's frame and scroll bar
WIDTHS = [DEFAULT_SIDEBAR, WIDE_SIDEBAR]
SCALES = [1.0, 1.25]
FONT_POINTS = 11  # Blender's default widget font size


def measure(scale: float):
    """A text's width in pixels at UI scale 1, as Blender's default font draws it at `scale`."""

    def width(text: str) -> float:
        blf.size(0, FONT_POINTS * scale)
        return blf.dimensions(0, text)[0] / scale

    return width


def everything(_text: str) -> bool:
    return True


ENTERPRISE = 5_000_000


def state_with(**numbers) -> State:
    fields = dict(
        org_id=1,
        plan="enterprise",
        total=12_345_678,
        monthly_remaining=4_321_000,
        monthly_allocation=ENTERPRISE,
        rollover_bank=8_024_678,
        rollover_purchased=2_000_000,
        rollover_cap=12_500_000,
        held=1_125_240,
        available=11_220_438,
        billing_date=(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=23)).isoformat(),
        version=1,
    )
    fields.update(numbers)
    state = State()
    state.set_credits(Credits(**fields))
    return state


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_every_figure_of_the_credits_panel_reads_whole(region, scale):
    for state, online in [
        (state_with(), True),
        (state_with(available=4_000, total=1_129_240), True),  # very low while a batch holds the rest
        (State(connection="disabled"), False),
    ]:
        panel = RecordingLayout(width=region - PANEL_MARGINS)
        credits_draw.draw_credits(panel, state, credits_draw.Thresholds(), online, region)
        assert panel.cut(measure(scale), everything) == []


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_history_rows_read_whole_figures_first(region, scale):
    rows = [
        HistoryRow(
            1, "2026-11-25T14:02:11Z", "render", "sh060", "grok-imagine", "standard", 15, -12_480, -12_480, 0, 7, "Ana"
        ),
        HistoryRow(2, "2026-12-01T00:00:00Z", "refill", None, None, None, None, ENTERPRISE, ENTERPRISE, 0, None, None),
        HistoryRow(3, "2026-11-25T15:00:00Z", "purchase", None, None, None, None, 2_000_000, 0, 2_000_000, None, "Ana"),
        HistoryRow(4, "2026-11-25T15:00:00Z", "expiry", None, None, None, None, -1_250_000, -1_250_000, 0, None, None),
    ]
    for row in rows:
        cells = credits_draw.history_cells(row, CARD)
        item = RecordingLayout(width=region - LIST_MARGINS)
        credits_draw.draw_history_item(item, cells.date, cells.shot, cells.tier, cells.cost, region)
        assert item.cut(measure(scale), everything) == [], cells
        assert cells.cost in item.texts()
    history = State()
    history.history.shot = "sh12"
    history.history.apply_page([], None, first=True)
    panel = RecordingLayout(width=region - PANEL_MARGINS)
    ui = SimpleNamespace(history_rows=[], history_index=0, history_tier="ALL", history_shot="sh12")
    credits_draw.draw_history(panel, history, ui, True)
    assert panel.cut(measure(scale), everything) == []


PRO = Account(plan="pro", role="editor", allowed_tiers=("draft", "standard", "high"), available=875_000)
SHOTS = [
    Shot("sh010", "veo-3.1", "standard", 8.0),
    Shot("sh020", "veo-3.1", "high", 7.5),
    Shot("sh030", "wan-2.6", "standard", 7.0),
    Shot("sh040", "seedance-2.0", "draft", 12.0),
    Shot("sh050", "veo-3.1", "4k", 8.0),  # not on Pro
    Shot("sh060", "grok-imagine", "high", 15.0),
]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_shot_rows_keep_name_tier_and_credits_whole(region, scale):
    est = estimate(SHOTS, CARD, PRO)
    for line in est.lines:
        row = RecordingLayout(width=region - LIST_MARGINS)
        draw.draw_shot_row(row, SimpleNamespace(select=False), line, CARD, region)
        assert row.cut(measure(scale), everything) == [], line.name
        texts = row.texts()
        assert line.name in texts
        assert (draw.formatting.credits(line.credits) if line.sendable else "—") in texts
        if widgets.is_wide(region):
            assert draw.engine_name(line.shot.engine, CARD) in texts


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_shots_panel_buttons_and_render_queue_read_whole(region, scale):
    scene = SimpleNamespace(act3_shots=[], act3_shots_index=0, name="Scene", frame_start=1, frame_end=250)
    settings = SimpleNamespace(tag_filter="hero")
    est = estimate([Shot(f"sh{i}", "veo-3.1", "high", 8.0) for i in range(40)], CARD, PRO)
    panel = RecordingLayout(width=region - PANEL_MARGINS)
    draw.draw_shots_panel(panel, scene, settings, est, None, region)
    assert panel.cut(measure(scale), everything) == []
    assert panel.find("Generate #hero · 166,400 cr").kind == "operator"

    state = State()
    shots = tuple(
        JobShot(i, f"sh{i:03d}", "veo-3.1", "high", 8.0, 8, 4_160, Status(s))
        for i, s in enumerate(["completed"] * 30 + ["failed"] + ["queued"] * 29)
    )
    state.jobs = {
        12: Job(
            id=12,
            name="seq010 previs",
            status=Status.PROCESSING,
            shots=shots,
            estimated_credits=249_600,
            charged_credits=124_800,
        )
    }
    queue = RecordingLayout(width=region - PANEL_MARGINS)
    draw.draw_render_queue(queue, state, CARD, expanded={12}, width=region)
    assert queue.cut(measure(scale)) == []


@pytest.mark.parametrize("scale", SCALES)
def test_the_cost_estimate_and_buy_dialogs_read_whole(scale):
    op = SimpleNamespace(use_draft=False, fit_to_budget=False)
    poor = Account(plan="pro", role="editor", allowed_tiers=("draft", "standard", "high"), available=9_000)
    for account in (PRO, poor):
        one = RecordingLayout(width=420 - 20)
        draw.draw_estimate_single(one, estimate(SHOTS[1:2], CARD, account), CARD, op=op)
        assert one.cut(measure(scale), everything) == []
        batch = estimate(SHOTS, CARD, account)
        many = RecordingLayout(width=620 - 20)
        draw.draw_estimate_batch(many, batch, CARD, rows=[SimpleNamespace(include=True)] * 6, op=op)
        assert many.cut(measure(scale)) == []
    state = state_with()
    state.packs = [{"id": "pack-2m", "credits": 2_000_000, "price": "$3,400"}]
    state.payment_method = {"brand": "Mastercard", "last4": "4444"}
    buy = RecordingLayout(width=360 - 20)
    credits_draw.draw_buy_dialog(buy, state, SimpleNamespace(pack="pack-2m"))
    assert buy.cut(measure(scale), everything) == []


def test_the_top_bar_text_fits_beside_the_scene_and_view_layer_selectors():
    # At 1600 px the top bar keeps about 250 px right of the workspace tabs for add-ons.
    state = state_with()
    assert state.header_text() == "11,220,438 cr · 1,125,240 held"
    assert measure(1.0)(state.header_text()) + 20 + 8 < 250


@pytest.mark.parametrize("scale", SCALES)
def test_the_budget_guard_panel_reads_whole_at_the_default_width(scale):
    settings = SimpleNamespace(guard_enabled=True, guard_min_balance=0, guard_pause_over_estimate=True, intercept_ops="")
    panel = RecordingLayout(width=DEFAULT_SIDEBAR - PANEL_MARGINS)
    draw.draw_generate_settings(panel, settings, ["act3ai.generte is not an operator: check the id"])
    assert panel.cut(measure(scale), everything) == []
