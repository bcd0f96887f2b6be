"""The runway, the Spend panel and its chart, the top shots, the background table and the history's
"Was High worth it?" tooltip: the extension in the real Blender module against a real act3-server.

Every number is worked out by hand from the rate card (core/pricing.py) and the forecast's rules
(docs/api.md), for renders made at 10 Mar 2031 12:00 UTC on the service's dev clock:

    sh010  Veo 3.1       Draft     8 s  260 × 1/2 × 8 = 1,040
    sh010  Veo 3.1       High      8 s  260 × 2 × 8   = 4,160
    sh020  Wan 2.6       Standard 10 s   98 × 10      =   980
    sh030  Grok Imagine  High      5 s   46 × 2 × 5   =   460
    sh040  Seedance 2.0  Standard  6 s  245 × 6       = 1,470
    sh050  Grok Imagine  Draft     1 s  ceil(46 / 2)  =    23
    Draft 1,063 (2 shots) · Standard 2,450 (2) · High 4,620 (2) · total 8,133 (6)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from support import blender
from support.layout import RecordingLayout
from support.servers import LiveServer

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()

SHOTS = [
    ("sh010", "veo-3.1", "draft", 8),
    ("sh010", "veo-3.1", "high", 8),
    ("sh020", "wan-2.6", "standard", 10),
    ("sh030", "grok-imagine", "high", 5),
    ("sh040", "seedance-2.0", "standard", 6),
    ("sh050", "grok-imagine", "draft", 1),
]


def render(server: LiveServer, shots: list[tuple[str, str, str, int]], name: str) -> None:
    body = {"name": name, "shots": [{"name": n, "engine": e, "tier": t, "duration_s": d} for n, e, t, d in shots]}
    job = server.post("/jobs", body, idem=name).json()
    deadline = time.monotonic() + 60
    while server.get(f"/jobs/{job['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the service did not finish the batch"
        time.sleep(0.05)


class Shell(blender.EnabledAddon):
    def panel(self, idname: str) -> RecordingLayout:
        layout = RecordingLayout()
        getattr(bpy.types, idname).draw(SimpleNamespace(layout=layout), bpy.context)
        return layout


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    blender.install_extension()
    blender.disable_extension()
    yield


@pytest.fixture
def shell(installed: None, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    monkeypatch.delenv("ACT3_API_KEY", raising=False)
    monkeypatch.delenv("ACT3_API_URL", raising=False)
    bpy.context.preferences.system.use_online_access = True
    # The dev clock first (every billing date since today passes with nothing spent: the bank fills
    # to the Pro cap, 2,187,500), then the renders, then Blender connects.
    assert live_server.post("/dev/clock", {"now": "2031-03-10T12:00:00Z"}).status_code == 200
    render(live_server, SHOTS, "seq010")
    shell = Shell(blender.enable_extension())
    bpy.context.scene.act3_shots.clear()
    for name in ("sh010", "sh020", "sh030"):  # sh040 and sh050 are not in this .blend
        bpy.context.scene.act3_shots.add().name = name
    bpy.context.scene.act3_shots_index = 0
    shell.connect(live_server)
    shell.until(lambda: shell.state.spend is not None, "the first spend")
    yield shell
    shell.module("core.keystore").clear_key(shell.module("session").user_dir())
    bpy.context.scene.act3_shots.clear()
    if blender.PACKAGE in bpy.context.preferences.addons:
        blender.disable_extension()


def pairs(layout: RecordingLayout) -> list[tuple[str, str]]:
    texts = layout.texts()
    return list(zip(texts, texts[1:], strict=False))


def test_the_runway_under_the_monthly_allocation_reads_the_forecast(shell: Shell):
    # Pace: 8,133 in 7 days = 1,161.86 a day. Available: 875,000 - 8,133 + 2,187,500 = 3,054,367,
    # which lasts 2,629 days: beyond the year the forecast looks at. To the refill on 1 Apr is 21.5
    # days: 8,133 / 7 × 21.5 = 24,979.9, 24,980 spent; 875,000 - 8,133 - 24,980 = 841,887 monthly
    # credits are left then, and the bank is at its cap: all of them lapse.
    panel = shell.panel("ACT3_PT_credits")
    line = panel.operator_button("act3.runway")
    assert (line.text, line.alert) == ("Over a year at this week's pace", False)
    assert ("Lapses at refill", "841,887 cr") in pairs(panel)
    tooltip = bpy.types.ACT3_OT_runway.description(bpy.context, None)
    assert tooltip.splitlines()[0] == (
        "Over a year at this week's pace · refills 1 Apr · 841,887 cr over the cap will lapse"
    )
    assert "Pace: 1,162 cr a day (the last 7 days)" in tooltip


def test_the_spend_panel_reads_the_period_by_tier_and_the_ten_most_expensive_shots(shell: Shell):
    panel = shell.panel("ACT3_PT_spend")
    (chart,) = panel.of_kind("template_icon")
    assert chart.args["scale"] == 11.25  # 228 px of panel at UI scale 1: 11.25 units of 20 px
    found = pairs(panel)
    assert ("1 Mar", "31 Mar") in found  # the period, 1 Mar to the refill on 1 Apr
    for figure in [
        ("Monthly", "875,000 cr"),
        ("Forecast", "1,162 cr/day"),
        ("Draft", "1,063 cr"),
        ("Standard", "2,450 cr"),
        ("High", "4,620 cr"),
        ("Total", "8,133 cr"),
    ]:
        assert figure in found
    shots = [(b.text, b.enabled) for b in panel.operators() if b.operator == "act3.select_shot"]
    # sh010: 1,040 + 4,160 = 5,200; sh040 and sh050 are not in this .blend: greyed out.
    assert shots == [("sh010", True), ("sh040", False), ("sh020", True), ("sh030", True), ("sh050", False)]
    texts = panel.texts()
    assert [texts[texts.index(name) + 1] for name, _ in shots] == [
        "5,200 cr",
        "1,470 cr",
        "980 cr",
        "460 cr",
        "23 cr",
    ]


def test_a_top_shot_button_selects_that_shot_in_the_shots_list(shell: Shell):
    scene = bpy.context.scene
    assert scene.act3_shots_index == 0
    assert bpy.ops.act3.select_shot(shot="sh030") == {"FINISHED"}
    assert scene.act3_shots[scene.act3_shots_index].name == "sh030"
    assert bpy.ops.act3.select_shot(shot="sh040") == {"CANCELLED"}  # not in this .blend: nothing moves
    assert scene.act3_shots[scene.act3_shots_index].name == "sh030"
    tip = bpy.types.ACT3_OT_select_shot.description(bpy.context, SimpleNamespace(shot="sh010"))
    assert tip == "sh010: 5,200 cr this period (2 renders).\nClick to select it in the Shots list."


def allocation_rows(preview: Any, colour: tuple[float, ...]) -> list[int]:
    """Rows (from the top) where more than half of the pixels have the allocation line's colour (Blender
    keeps a preview in 8 bits a channel: within 1/100)."""
    w, h = preview.image_size
    pixels = list(preview.image_pixels_float)
    rows = []
    for y in range(h):
        start = (h - 1 - y) * w * 4  # Blender stores rows from the bottom
        row = [tuple(pixels[start + 4 * x : start + 4 * x + 4]) for x in range(w)]
        same = sum(1 for px in row if all(abs(a - b) < 0.01 for a, b in zip(px, colour, strict=True)))
        if same > w // 2:
            rows.append(y)
    return rows


@pytest.mark.parametrize(
    ("ui_scale", "pixel_size", "size", "line_rows"),
    [
        # A UI unit is 20 px at scale 1: 11.25 units = 225 px, less Blender's 4 px preview padding a
        # side = 217 px square. The cumulative part is the top 3/5 of the 213 rows inside a 2 px
        # margin: 127.8, 128 rows, its 0 at row 130. Its top is 8/7 of the allocation (the highest
        # value), 1,000,000: the line sits 0.875 up, 130 - round(0.875 × 128) = 130 - 112 = 18.
        (1.0, 1, (217, 217), [18]),
        # Scale 2: 40 px units (Blender's pixel size is 2 there): 450 - 8 = 442 square; a 4 px margin,
        # 3/5 of 434 = 260.4, 260 rows, 0 at row 264: 264 - round(227.5) = 264 - 228 = 36 (Python
        # rounds halves to even), two rows thick.
        (2.0, 2, (442, 442), [36, 37]),
    ],
)
def test_the_chart_is_drawn_pixel_for_pixel_at_ui_scale_1_and_2(shell: Shell, ui_scale, pixel_size, size, line_rows):
    ui = shell.module("credits.ui")
    chart = shell.module("credits.chart")
    picture = ui.chart_picture(shell.state, 280 - ui.PANEL_MARGINS, ui_scale, pixel_size)
    preview = ui.chart_preview(picture)
    assert tuple(preview.image_size) == size
    assert picture.scale == 11.25
    assert allocation_rows(preview, chart.ALLOCATION_COLOUR) == line_rows
    # The days still to come are a faint floor: Blender composites a preview's pixels as
    # premultiplied, so no channel may exceed its alpha (a straight 0.5 grey at alpha 0.18 showed
    # as a bright block over the panel). Within 1/100: Blender keeps 8 bits a channel.
    pixels = list(preview.image_pixels_float)
    rgba = [pixels[i : i + 4] for i in range(0, len(pixels), 4)]
    floor = [px for px in rgba if 0.1 < px[3] < 0.3]
    assert len(floor) > len(rgba) // 4  # 1 Mar to the 10th drawn, the rest of March to come
    assert all(max(px[:3]) <= px[3] + 0.01 for px in rgba)


def test_in_background_mode_the_spend_prints_as_a_table(shell: Shell, capsys):
    assert bpy.app.background
    assert bpy.ops.act3.print_spend() == {"FINISHED"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ACT3 spend 1 Mar – 31 Mar (charged renders)"
    assert lines[1].startswith("Over a year at this week's pace · refills 1 Apr · 841,887 cr")
    assert [line.split() for line in lines[3:7]] == [
        ["Draft", "1,063", "2"],
        ["Standard", "2,450", "2"],
        ["High", "4,620", "2"],
        ["Total", "8,133", "6"],
    ]
    assert lines[8].split() == ["sh010", "5,200"]
    day = next(line for line in lines if line.startswith("2031-03-10"))
    assert day.split() == ["2031-03-10", "1,063", "2,450", "4,620", "0", "8,133"]  # 4K: none


def test_a_shot_rendered_at_draft_and_high_shows_both_costs_in_its_history_tooltip(shell: Shell):
    ui = bpy.context.window_manager.act3
    shell.until(lambda: len(ui.history_rows) >= 6, "the history rows")
    by_tier = {(r.shot, r.tier): r.tooltip for r in ui.history_rows}
    line = "sh010 at Draft: 1,040 cr · at High: 4,160 cr (4× Draft)"
    assert by_tier[("sh010", "High")].splitlines()[-1] == line
    assert by_tier[("sh010", "Draft")].splitlines()[-1] == line
    assert "at Draft" not in by_tier[("sh020", "Standard")]  # rendered at one tier only


def test_a_new_charge_brings_the_spend_again_without_a_refresh(shell: Shell, live_server: LiveServer):
    render(live_server, [("sh060", "grok-imagine", "draft", 1)], "seq020")  # 23 more
    shell.until(lambda: shell.state.spend.by_tier.total.credits == 8_156, "the spend after the charge", timeout=20)
    assert ("Total", "8,156 cr") in pairs(shell.panel("ACT3_PT_spend"))
