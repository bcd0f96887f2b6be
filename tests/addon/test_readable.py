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
from act3_credits.core.contract import Job, JobShot, Me
from act3_credits.core.forecast import Forecast
from act3_credits.core.pricing import DEFAULT_RATE_CARD as CARD
from act3_credits.core.shots import Account, Shot, estimate
from act3_credits.core.state import Credits, HistoryRow, Spend, State
from act3_credits.core.usage import Usage
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
        # A shot named as studios name them (sequence and shot), and the dearest shot the rate card
        # prices (Seedance 2.0, 15 s at 4K): both read whole beside the figure at the default width.
        HistoryRow(5, "2026-11-25T14:02:11Z", "render", "sq010_sh0010", "veo-3.1", "high", 8, -4_160, -4_160, 0, 7, "A"),
        HistoryRow(6, "2026-11-25T14:02:11Z", "render", "sq120_sh0480", "seedance-2.0", "4k", 15, -14_700, 0, 0, 7, "A"),
        HistoryRow(2, "2026-12-01T00:00:00Z", "refill", None, None, None, None, ENTERPRISE, ENTERPRISE, 0, None, None),
        HistoryRow(3, "2026-11-25T15:00:00Z", "purchase", None, None, None, None, 2_000_000, 0, 2_000_000, None, "Ana"),
        HistoryRow(4, "2026-11-25T15:00:00Z", "expiry", None, None, None, None, -1_250_000, -1_250_000, 0, None, None),
    ]
    for row in rows:
        cells = credits_draw.history_cells(row, CARD)
        item = RecordingLayout(width=region - LIST_MARGINS)
        credits_draw.draw_history_item(item, cells.date, cells.shot, cells.tier, cells.cost, region)
        assert item.cut(measure(scale), everything) == [], cells
        assert cells.cost in item.texts() and cells.shot in item.texts()
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
    settings = SimpleNamespace(
        guard_enabled=True, guard_min_balance=0, guard_pause_over_estimate=True, intercept_ops=""
    )
    panel = RecordingLayout(width=DEFAULT_SIDEBAR - PANEL_MARGINS)
    draw.draw_generate_settings(panel, settings, ["act3ai.generte is not an operator: check the id"])
    assert panel.cut(measure(scale), everything) == []


def spend_of(state: State, **numbers) -> State:
    """Enterprise-sized spend and a forecast: the longest figures the runway and the Spend panel show."""
    fields = dict(
        as_of=dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC),
        pace_7d=1_250_000,
        pace_30d=1_000_000,
        available=11_220_438,
        held=1_125_240,
        next_refill_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        runs_out_at=None,
        days_left=None,
        monthly_left_at_refill=4_321_000,
        will_roll_over=0,
        will_expire=12_345_678,
    )
    fields.update(numbers)
    tiers = [("4k", 9_876_543, 1_234), ("high", 4_620_000, 999), ("standard", 2_450_000, 600), ("draft", 1_063, 2)]
    shots = [(f"sq{i * 10:03d}_sh{i * 100:04d}", 9_876_543 - i, 12) for i in range(10)]  # the tooltip has longer ones

    def usage(group_by: str, groups: list[tuple[str, int, int]]) -> Usage:
        return Usage.from_json(
            {
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-12-01T00:00:00Z",
                "group_by": group_by,
                "groups": [{"key": k, "credits": c, "shots": n, "seconds": 0} for k, c, n in groups],
                "total": {"credits": sum(c for _k, c, _n in groups), "shots": 9_999, "seconds": 0},
            }
        )

    days = tuple((t, usage("day", [("2026-11-19", c, n)])) for t, c, n in tiers)
    state.spend = Spend(usage("tier", tiers), days, usage("shot", shots), Forecast(**fields))
    return state


# ------------------------------------------------------------------ budgets on the work (issue 11)

BUDGETS = [
    {
        "project": "harbour_spot_final_v12",
        "credits": 12_500_000,
        "period": "billing_period",
        "action": "refuse",
        "spent": 11_234_560,
        "held": 1_125_240,
        "left": 140_200,
    }
]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_the_runway_and_the_spend_panel_read_whole(region, scale):
    later = dt.datetime(2026, 11, 26, 7, 12, tzinfo=dt.UTC)
    for state in [
        spend_of(state_with()),  # over a year, and 12,345,678 cr lapse
        spend_of(state_with(), runs_out_at=later, days_left=5.8),  # before the refill: 'Runs out 26 Nov'
        spend_of(state_with(), pace_7d=0, runs_out_at=later, days_left=35.8, will_roll_over=1_250_000),
        spend_of(state_with(), pace_7d=0, pace_30d=0),  # 'Runway: no spend in 30 days'
    ]:
        panel = RecordingLayout(width=region - PANEL_MARGINS)
        credits_draw.draw_credits(panel, state, credits_draw.Thresholds(), True, region)
        assert panel.cut(measure(scale), everything) == []
        spend = RecordingLayout(width=region - PANEL_MARGINS)
        picture = credits_draw.ChartIcon(1, 11.25, (("high", 2), ("allocation", 3), ("forecast", 4)))
        credits_draw.draw_spend(spend, state, picture, ["sq010_sh0100"], region)
        assert spend.cut(measure(scale), everything) == []
        assert "9,876,543 cr" in spend.texts()


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_the_project_budget_in_credits_detail_reads_whole(region, scale):
    for state in (state_with(), State()):
        state.budgets = BUDGETS
        for project in ("harbour_spot_final_v12", "untitled"):  # with a budget, and without one
            panel = RecordingLayout(width=region - PANEL_MARGINS)
            credits_draw.draw_credits(panel, state, credits_draw.Thresholds(), True, region, project=project)
            assert panel.cut(measure(scale), everything) == [], project
    texts = panel_texts(region, "harbour_spot_final_v12")
    assert texts[texts.index("Budget per period") :][:8] == [
        "Budget per period",
        "12,500,000 cr",
        "Spent",
        "11,234,560 cr",
        "Held",
        "1,125,240 cr",
        "Left",
        "140,200 cr",
    ]


def panel_texts(region: int, project: str) -> list[str]:
    state = state_with()
    state.budgets = BUDGETS
    panel = RecordingLayout(width=region - PANEL_MARGINS)
    credits_draw.draw_credits(panel, state, credits_draw.Thresholds(), True, region, project=project)
    return panel.texts()


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_a_shot_with_its_draft_approval_and_the_upgrade_button_read_whole(region, scale):
    shot = SimpleNamespace(
        name="sh010_hero_wide",
        frame_start=1,
        frame_end=192,
        camera=None,
        engine="veo-3.1",
        tier="draft",
        tags="hero",
        locked=False,
        approved=True,
        final_tier="high",
        last_job_id=12_345,
        last_tier="draft",
        last_cost=1_040,
        select=False,
    )
    scene = SimpleNamespace(
        act3_shots=[shot], act3_shots_index=0, name="Scene", frame_start=1, frame_end=250, act3_project=""
    )
    est = estimate([Shot("sh010_hero_wide", "veo-3.1", "draft", 8.0)], CARD, PRO)
    panel = RecordingLayout(width=region - PANEL_MARGINS)
    draw.draw_shots_panel(panel, scene, SimpleNamespace(tag_filter=""), est, est.lines[0], region, "harbour_spot", CARD)
    assert panel.cut(measure(scale), everything) == []
    assert "Last: job 12345 · Draft · 1,040 cr" in panel.texts()
    assert panel.operator_button("act3.upgrade_approved").text == "Upgrade Approved · 1 shots"


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("region", WIDTHS)
def test_a_scheduled_job_in_the_render_queue_reads_whole(region, scale):
    state = state_with(billing_date="2026-12-01")
    shots = [
        {"index": i, "name": f"sh{i:03d}", "engine": "veo-3.1", "tier": "high", "duration_s": 8, "credits": 4_160}
        for i in range(12)
    ]
    job = {"id": 14, "name": "Scene deferred", "status": "scheduled", "estimated_credits": 49_920}
    state.jobs = {
        14: Job.from_json({**job, "charged_credits": 0, "held": 0, "shots": [{**s, "status": "queued"} for s in shots]})
    }
    queue = RecordingLayout(width=region - PANEL_MARGINS)
    draw.draw_render_queue(queue, state, CARD, width=region)
    assert queue.cut(measure(scale), everything) == []
    assert "Scheduled · starts 1 Dec" in queue.texts()


@pytest.mark.parametrize("scale", SCALES)
def test_the_cost_estimate_with_a_budget_a_cap_defer_and_the_draft_saving_reads_whole(scale):
    from act3_credits.core import limits

    budget = limits.Budget(
        "harbour_spot_final_v12", 12_500_000, "billing_period", "refuse", 11_234_560, 1_125_240, 140_200
    )
    cap = limits.MemberCap(2_000_000, 1_234_560, 600_000, 165_440)
    saving = limits.DraftSaving(1_234_560, 2_469_120, 4_938_240, "High")
    op = SimpleNamespace(use_draft=False, fit_to_budget=False)
    for action in ("refuse", "warn", "pause"):
        b = limits.Budget(budget.project, budget.credits, budget.period, action, budget.spent, budget.held, budget.left)
        batch = estimate(SHOTS, CARD, PRO)
        for c in (None, cap):
            lim = limits.assess(b.project, b, c, [ln.credits for ln in batch.sent])
            many = RecordingLayout(width=620 - 20)
            draw.draw_estimate_batch(
                many,
                batch,
                CARD,
                op=op,
                limits=lim,
                billing_date="2026-12-01",
                saving=saving,
                rows=[SimpleNamespace(include=True)] * 6,
            )
            assert many.cut(measure(scale), everything) == [], (action, c)
            one = RecordingLayout(width=420 - 20)
            single = estimate(SHOTS[:1], CARD, PRO)
            lim1 = limits.assess(b.project, b, c, [ln.credits for ln in single.sent])
            draw.draw_estimate_single(one, single, CARD, op=op, limits=lim1, billing_date="2026-12-01")
            assert one.cut(measure(scale), everything) == [], (action, c)


@pytest.mark.parametrize("scale", SCALES)
def test_the_spending_limits_in_the_preferences_read_whole_at_the_sidebar_width(scale):
    state = state_with()
    state.me = Me.from_json(
        {
            "org": {"id": 1, "name": "Harbour Lane Studio", "plan": "pro"},
            "member": {
                "id": 3,
                "name": "Cleo (editor)",
                "role": "editor",
                "cap": {"credits_per_period": 2_000_000, "spent": 1_234_560, "held": 600_000, "left": 165_440},
            },
        }
    )
    state.packs = [{"id": "pack-2m", "credits": 2_000_000, "price_cents": 340_000}]
    state.auto_top_up = {
        "enabled": True,
        "below": 1_000_000,
        "pack_id": "pack-2m",
        "max_per_period_cents": 1_020_000,
        "spent_this_period_cents": 680_000,
        "set_by": {"id": 1, "name": "Ana (owner)"},
        "set_at": "2026-11-25T14:02:11Z",
    }
    box = RecordingLayout(width=DEFAULT_SIDEBAR - PANEL_MARGINS)
    credits_draw.draw_spending_limits(box, state)
    assert box.cut(measure(scale), everything) == []
    texts = box.texts()
    assert texts[texts.index("At most a period") :][:4] == [
        "At most a period",
        "$10,200.00",
        "Spent this period",
        "$6,800.00",
    ]
