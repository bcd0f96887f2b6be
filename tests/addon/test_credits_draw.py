"""What the artist reads in the top bar, the Credits panel, the history and the Buy dialog.

The draw functions are plain functions of a layout and the State, so these tests run them with a
recording layout, without Blender and without a service.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from types import SimpleNamespace

import pytest
from support.layout import RecordingLayout

from act3_credits.core import formatting
from act3_credits.core.contract import Me
from act3_credits.core.forecast import Forecast
from act3_credits.core.state import Credits, HistoryRow, Spend, State
from act3_credits.core.usage import Usage
from act3_credits.credits import draw as credits_draw
from act3_credits.credits import export

PRO = 875_000
DEFAULTS = credits_draw.Thresholds()


def synced_state(available: int = PRO, **numbers) -> State:
    today = dt.datetime.now(dt.UTC).date()
    fields = dict(
        org_id=1,
        plan="pro",
        total=available,
        monthly_remaining=available,
        monthly_allocation=PRO,
        rollover_bank=0,
        rollover_purchased=0,
        rollover_cap=2_187_500,
        held=0,
        available=available,
        billing_date=(today + dt.timedelta(days=6)).isoformat(),
        as_of="2026-11-25T14:02:11Z",
        version=1,
    )
    fields.update(numbers)
    state = State()
    state.set_credits(Credits(**fields))
    return state


def header(state: State, thresholds: credits_draw.Thresholds = DEFAULTS) -> RecordingLayout:
    layout = RecordingLayout()
    credits_draw.draw_header(layout, state, thresholds)
    return layout


# --------------------------------------------------------------------------------------- top bar


def test_top_bar_reads_the_balance_and_opens_the_credits_panel():
    button = header(synced_state()).operator_button("act3.open_credits")
    assert button.text == "875,000 cr"
    assert button.icon == "NONE"
    assert not button.alert


@pytest.mark.parametrize(
    ("available", "level", "alert"),
    [
        (int(PRO * 0.20), "ok", False),  # exactly 20 % is not below it
        (int(PRO * 0.20) - 1, "warn", False),
        (int(PRO * 0.05), "warn", False),
        (int(PRO * 0.05) - 1, "critical", True),
        (0, "critical", True),
    ],
)
def test_top_bar_warns_below_20_percent_and_turns_red_below_5_percent(available, level, alert):
    state = synced_state(available)
    button = header(state).operator_button("act3.open_credits")
    assert DEFAULTS.level(state) == level
    assert button.alert is alert
    assert button.icon == ("ERROR" if level != "ok" else "NONE")
    assert button.text == formatting.credits(available)


def test_while_a_batch_holds_credits_the_top_bar_reads_what_can_still_be_spent_and_the_held_part():
    # 132,680 cr on the account, 125,240 of it held by a running batch: 7,440 cr can still be spent,
    # under 5 % of the 875,000 allocation, so the number and its red agree.
    state = synced_state(7_440, total=132_680, monthly_remaining=132_680, held=125_240)
    button = header(state).operator_button("act3.open_credits")
    assert (button.text, button.alert, button.icon) == ("7,440 cr · 125,240 held", True, "ERROR")
    # The held part drops shot by shot as each shot is charged from the hold.
    state.set_credits(Credits(**{**state.credits.to_json(), "total": 128_520, "held": 121_080, "version": 2}))
    assert header(state).operator_button("act3.open_credits").text == "7,440 cr · 121,080 held"


def test_a_studio_warning_line_in_credits_raises_a_warning_above_20_percent():
    state = synced_state(400_000)
    assert header(state).operator_button("act3.open_credits").icon == "NONE"
    custom = credits_draw.Thresholds(custom=500_000)
    button = header(state, custom).operator_button("act3.open_credits")
    assert button.icon == "ERROR" and not button.alert
    assert "Below your line of 500,000 cr" in credits_draw.header_tooltip(state, custom)


def test_thresholds_from_the_preferences_move_the_lines():
    state = synced_state(300_000)  # 34 % of the allocation
    assert credits_draw.Thresholds(warn=0.40, critical=0.35).level(state) == "critical"


def test_a_stale_balance_shows_a_clock_and_as_of_time_in_the_tooltip():
    state = synced_state()
    state.last_sync_monotonic = time.monotonic() - 61
    synced_at = dt.datetime(2026, 11, 25, 14, 2, tzinfo=dt.UTC)
    state.last_sync_wall = synced_at
    button = header(state).operator_button("act3.open_credits")
    assert button.icon == "TIME"
    assert button.text == "875,000 cr"
    tooltip = credits_draw.header_tooltip(state, DEFAULTS)
    assert tooltip.splitlines()[0] == f"875,000 cr available for new jobs, as of {formatting.clock(synced_at)}"
    assert "more than a minute old" in tooltip


def test_a_fresh_balance_tooltip_says_when_it_was_synced():
    state = synced_state(236_680, total=245_000, held=8_320)
    tooltip = credits_draw.header_tooltip(state, DEFAULTS)
    assert tooltip.startswith(f"236,680 cr available for new jobs, as of {formatting.clock(state.last_sync_wall)}")
    assert "8,320 cr held by running jobs, charged shot by shot (balance 245,000 cr)" in tooltip


def test_an_unreachable_service_shows_the_last_balance_with_a_broken_link_and_the_reason():
    state = synced_state()
    state.set_connection("offline", "Cannot reach ACT3 at 127.0.0.1:9: connection refused.")
    button = header(state).operator_button("act3.open_credits")
    assert (button.text, button.icon) == ("875,000 cr", "UNLINKED")
    assert "Cannot reach ACT3 at 127.0.0.1:9: connection refused." in credits_draw.header_tooltip(state, DEFAULTS)


def test_the_tooltip_says_why_the_balance_is_not_up_to_date_not_always_a_minute():
    state = synced_state()  # synced a moment ago, then the service went away
    state.set_connection("offline", "ACT3 service unreachable at 127.0.0.1:9: connection refused.")
    tooltip = credits_draw.header_tooltip(state, DEFAULTS)
    assert "Not up to date: ACT3 cannot be reached right now" in tooltip
    assert "more than a minute" not in tooltip

    cached = State()  # Blender just started: the balance saved by the last session
    cached.set_credits(synced_state().credits, from_cache=True)
    tooltip = credits_draw.header_tooltip(cached, DEFAULTS)
    assert "Not up to date: saved by an earlier session, not confirmed by ACT3 yet" in tooltip
    assert "more than a minute" not in tooltip


def test_without_a_key_the_top_bar_asks_for_one():
    state = State(connection="unconfigured")
    assert header(state).operator_button("act3.open_credits").text == "ACT3: set API key"


# --------------------------------------------------------------------------------- credits panel


def credits_panel(state: State, online: bool = True) -> RecordingLayout:
    layout = RecordingLayout()
    credits_draw.draw_credits(layout, state, DEFAULTS, online)
    return layout


def figures(panel: RecordingLayout) -> dict[str, str]:
    """'Label' -> 'value' for every figure row (a split of a label and a right-aligned value)."""
    labels = panel.of_kind("label")
    pairs = zip(labels, labels[1:], strict=False)
    return {a.text: b.text for a, b in pairs if a.container == "split" and (b.text or "").endswith(" cr")}


def test_credits_panel_shows_available_held_monthly_bank_and_purchased_once_each():
    state = synced_state(
        total=742_000,
        monthly_remaining=612_000,
        rollover_bank=130_000,
        rollover_purchased=50_000,
        held=8_320,
        available=733_680,
    )
    panel = credits_panel(state)
    assert figures(panel) == {
        "Available": "733,680 cr",
        "Held by jobs": "8,320 cr",
        "Rolled over": "80,000 cr",  # the bank's 130,000 less the 50,000 bought
        "Cap": "2,187,500 cr",
        "Never expire": "50,000 cr",
    }
    (bar,) = panel.of_kind("progress")
    assert bar.text == "612,000 of 875,000 cr"
    assert bar.factor == pytest.approx(612_000 / 875_000)
    assert panel.find("Refills").text.endswith("(in 6 days)")
    assert "Balance" not in panel.text() and "Total" not in panel.text()  # one number, said once
    panel.operator_button("act3.refresh", "Refresh")
    panel.operator_button("act3.buy_credits", "Buy Credits")


def usage(group_by: str, groups: list[tuple[str, int, int]]) -> Usage:
    return Usage.from_json(
        {
            "from": "2026-11-01T00:00:00Z",
            "to": "2026-12-01T00:00:00Z",
            "group_by": group_by,
            "groups": [{"key": k, "credits": c, "shots": n, "seconds": 8 * n} for k, c, n in groups],
            "total": {"credits": sum(c for _k, c, _n in groups), "shots": sum(n for _k, _c, n in groups), "seconds": 0},
        }
    )


def with_forecast(state: State, **numbers) -> State:
    """A state whose worker has brought the period's spend and this forecast (as of 20 Nov 12:00 UTC)."""
    fields = dict(
        as_of=dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC),
        pace_7d=40_000,
        pace_30d=30_000,
        available=580_000,
        held=20_000,
        next_refill_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        runs_out_at=dt.datetime(2026, 12, 26, 21, tzinfo=dt.UTC),
        days_left=36.3,
        monthly_left_at_refill=160_000,
        will_roll_over=160_000,
        will_expire=0,
    )
    fields.update(numbers)
    high = usage("tier", [("high", 280_000, 67)])
    state.spend = Spend(high, (("high", usage("day", [("2026-11-19", 280_000, 67)])),), high, Forecast(**fields))
    return state


def test_the_runway_reads_how_long_the_credits_last_and_what_the_refill_will_do():
    # docs/api.md's worked example: 40,000 a day from 580,000 lasts 36.3 days; 160,000 roll over.
    panel = credits_panel(with_forecast(synced_state()))
    line = panel.operator_button("act3.runway")
    assert (line.text, line.alert) == ("≈ 36 days at this week's pace", False)
    assert panel.texts()[panel.texts().index("Rolls over") + 1] == "160,000 cr"
    # Over the cap: what lapses at the refill, as the sentence in the tooltip.
    state = with_forecast(synced_state(), monthly_left_at_refill=510_000, will_roll_over=160_000, will_expire=350_000)
    tooltip = credits_draw.runway(state).tooltip
    assert (
        tooltip.splitlines()[0] == "≈ 36 days at this week's pace · refills 1 Dec · 350,000 cr over the cap will lapse"
    )
    assert figures(credits_panel(state))["Lapses at refill"] == "350,000 cr"


def test_the_runway_turns_to_the_alert_style_when_it_ends_before_the_next_refill():
    # 580,000 at 100,000 a day: 5.8 days from 20 Nov 12:00, 26 Nov 07:12, before the refill on 1 Dec.
    state = with_forecast(
        synced_state(),
        pace_7d=100_000,
        runs_out_at=dt.datetime(2026, 11, 26, 7, 12, tzinfo=dt.UTC),
        days_left=5.8,
        monthly_left_at_refill=0,
        will_roll_over=0,
    )
    panel = credits_panel(state)
    line = panel.operator_button("act3.runway")
    assert (line.text, line.alert, line.icon) == ("≈ 5 days at this week's pace", True, "ERROR")
    assert panel.find("Runs out").alert and panel.find("26 Nov").alert
    # The 30-day pace when the last 7 days saw nothing; none at all: no runway, said so.
    assert credits_panel(with_forecast(synced_state(), pace_7d=0)).operator_button("act3.runway").text == (
        "≈ 36 days at this month's pace"
    )
    quiet = with_forecast(synced_state(), pace_7d=0, pace_30d=0, runs_out_at=None, days_left=None)
    assert credits_panel(quiet).operator_button("act3.runway").text == "Runway: no spend in 30 days"


def test_before_the_first_forecast_the_runway_rows_hold_a_dash():
    panel = credits_panel(synced_state())
    assert panel.operator_button("act3.runway").text == "Runway: —"
    assert panel.texts()[panel.texts().index("At the refill") + 1] == "—"


def test_the_credits_panel_keeps_the_same_rows_whatever_happens_so_nothing_below_moves():
    shapes = []
    for state, online in [
        (State(), True),  # before the first answer
        (with_forecast(synced_state()), True),
        (with_forecast(synced_state(), runs_out_at=dt.datetime(2026, 11, 26, tzinfo=dt.UTC), days_left=5.5), True),
        (synced_state(), True),
        (synced_state(1_000), True),  # very low
        (synced_state(available=700_000, total=800_000, held=100_000), True),
        (State(connection="disabled"), False),
    ]:
        state.last_message = "Sent sh010 to ACT3 (job 7): 1 shot, 4,160 cr held."  # goes to the status bar
        panel = credits_panel(state, online)
        assert "Sent sh010" not in panel.text()
        shapes.append([(i.kind, i.container) for i in panel.items])
    assert all(shape == shapes[0] for shape in shapes)


def test_credits_panel_shows_a_connection_problem_as_one_short_line_with_the_reason_in_its_tooltip():
    state = synced_state()
    error = "The ACT3 API key was refused: check it in Preferences > Add-ons > ACT3 Credits."
    state.set_connection("auth", error)
    line = credits_panel(state).operator_button("act3.status")
    assert (line.text, line.icon, line.alert) == ("API key refused", "ERROR", True)
    assert credits_draw.status(state, DEFAULTS, True).tooltip == error


def test_credits_panel_says_nothing_is_sent_while_online_access_is_off():
    state = State(connection="disabled")
    line = credits_panel(state, online=False).operator_button("act3.status")
    assert line.text == "Online access is off"
    tooltip = credits_draw.status(state, DEFAULTS, False).tooltip
    assert credits_draw.OFFLINE_LINE in tooltip
    assert "Turn it on in Preferences > System > Network > Allow Online Access." in tooltip
    assert "ACT3: offline" not in credits_panel(state, online=False).text()


def test_credits_panel_says_when_the_balance_is_very_low():
    panel = credits_panel(synced_state(1_000))
    line = panel.operator_button("act3.status")
    assert line.alert and line.text == "Very low: under 5 % of monthly"
    assert panel.find("1,000 cr").alert  # the Available figure turns red with it
    tooltip = credits_draw.header_tooltip(synced_state(1_000), DEFAULTS)
    assert "Very low: under 5 % of the monthly allocation available" in tooltip


def test_billing_line_counts_days():
    today = dt.datetime.now(dt.UTC).date()
    assert credits_draw.billing_line(today.isoformat()).endswith("(today)")
    assert credits_draw.billing_line((today + dt.timedelta(days=1)).isoformat()).endswith("(tomorrow)")
    assert credits_draw.billing_line("") == "Next refill not known yet"
    assert credits_draw.billing_line("2026-12-01").startswith("Refills 1 Dec (")


# ---------------------------------------------------------------------------------------- history


def row(id_: int, at: str, shot: str | None, tier: str | None, credits: int, kind: str = "render") -> HistoryRow:
    return HistoryRow(
        id=id_,
        at=at,
        kind=kind,
        shot=shot,
        engine="veo-3.1" if kind == "render" else None,
        tier=tier,
        duration_s=8 if kind == "render" else None,
        credits=credits,
        monthly_delta=credits if kind == "render" else 0,
        bank_delta=0 if kind == "render" else credits,
        job_id=1 if kind == "render" else None,
        member="Ana (editor)",
    )


def test_history_rows_read_date_shot_tier_and_cost():
    at = "2026-11-25T14:02:11Z"
    cells = credits_draw.history_cells(row(3, at, "sh010", "high", -4_160))
    local = dt.datetime(2026, 11, 25, 14, 2, 11, tzinfo=dt.UTC).astimezone()
    assert (cells.date, cells.shot, cells.tier, cells.cost) == (
        local.strftime("%d %b"),
        "sh010",
        "High",
        "−4,160",
    )
    assert cells.tooltip == f"{formatting.day(at)} · sh010 · Veo 3.1 · High · 8 s · −4,160 cr · Ana (editor)"
    assert credits_draw.history_cells(row(5, at, "sh020", "standard", -2_080)).tier == "Standard"
    purchase = credits_draw.history_cells(row(4, "2026-11-25T15:00:00Z", None, None, 250_000, kind="purchase"))
    assert (purchase.shot, purchase.tier, purchase.cost) == ("Purchase", "", "+250,000")
    wide = RecordingLayout()
    credits_draw.draw_history_item(wide, cells.date, cells.shot, cells.tier, cells.cost, width=400)
    assert wide.texts() == [cells.date, "sh010", "High", "−4,160"]
    narrow = RecordingLayout()  # the sidebar's default width: the tier is in the tooltip and the filter
    credits_draw.draw_history_item(narrow, cells.date, cells.shot, cells.tier, cells.cost, width=280)
    assert narrow.texts() == [cells.date, "sh010", "−4,160"]


def test_a_shot_rendered_at_draft_and_at_high_shows_both_costs_in_its_tooltip():
    rows = [
        row(4, "2026-11-25T15:00:00Z", "sh010", "high", -4_160),
        row(3, "2026-11-25T14:00:00Z", "sh020", "standard", -2_080),
        row(2, "2026-11-25T13:00:00Z", "sh010", "draft", -1_040),
        row(1, "2026-11-25T12:00:00Z", "sh010", "draft", -520),  # an older draft: the newest counts
    ]
    costs = credits_draw.shot_tier_costs(rows)
    tips = [credits_draw.history_cells(r, None, costs).tooltip.splitlines() for r in rows]
    both = "sh010 at Draft: 1,040 cr · at High: 4,160 cr (4× Draft)"
    assert tips[0][-1] == tips[2][-1] == both
    assert len(tips[1]) == 1  # sh020: one tier only, nothing to compare


def test_history_panel_lists_rows_offers_more_and_sums_tiers():
    state = State()
    state.history.apply_page(
        [
            row(3, "2026-11-25T14:02:11Z", "sh030", "high", -4_160),
            row(2, "2026-11-25T13:00:00Z", "sh020", "standard", -2_080),
            row(1, "2026-11-25T12:00:00Z", "sh010", "high", -2_080),
        ],
        "cursor-2",
        first=True,
    )
    ui = SimpleNamespace(history_rows=[], history_index=0, history_tier="ALL", history_shot="")
    layout = RecordingLayout()
    credits_draw.draw_history(layout, state, ui, online_access=True)
    (lst,) = layout.of_kind("template_list")
    assert (lst.args["type"], lst.property) == ("ACT3_UL_history", "history_rows")
    more = layout.operator_button("act3.history_more")
    assert more.text == "Load More" and more.enabled
    layout.operator_button("act3.export_history_csv")
    texts = layout.texts()
    assert "3 rows loaded" in texts
    assert texts[texts.index("High") + 1] == "6,240 cr"
    assert texts[texts.index("Standard") + 1] == "2,080 cr"
    assert texts[texts.index("Draft") + 1] == "0 cr"


def test_a_search_that_matches_nothing_says_so():
    state = State()
    state.history.shot = "sh12"
    state.history.apply_page([], None, first=True)
    ui = SimpleNamespace(history_rows=[], history_index=0, history_tier="ALL", history_shot="sh12")
    layout = RecordingLayout()
    credits_draw.draw_history(layout, state, ui, online_access=True)
    assert "No matches for 'sh12'" in layout.texts()


def test_history_load_more_is_off_once_everything_is_loaded():
    state = State()
    state.history.apply_page([row(1, "2026-11-25T12:00:00Z", "sh010", "draft", -520)], None, first=True)
    ui = SimpleNamespace(history_rows=[], history_index=0, history_tier="ALL", history_shot="")
    layout = RecordingLayout()
    credits_draw.draw_history(layout, state, ui, online_access=True)
    assert not layout.operator_button("act3.history_more").enabled
    assert "1 row loaded, all shown" in layout.texts()


def test_csv_export_rows_keep_numbers_and_defuse_formulas():
    rows = list(export.csv_rows([row(1, "2026-11-25T12:00:00Z", "=HYPERLINK(1)", "draft", -520)]))
    assert rows == [
        ["2026-11-25T12:00:00Z", "render", "'=HYPERLINK(1)", "veo-3.1", "draft", 8, -520, -520, 0, 1, "Ana (editor)", "", ""]
    ]
    assert len(export.HEADER) == len(rows[0]) and export.HEADER[-2:] == ("reason", "auto")


# --------------------------------------------------------------------------------------- buying


PACKS = [
    {"id": "pack-50k", "credits": 50_000, "price_cents": 10_000, "currency": "usd", "price": "$100"},
    {"id": "pack-250k", "credits": 250_000, "price_cents": 47_500, "currency": "usd", "price": "$475"},
]


def test_buy_dialog_says_the_charge_the_card_and_the_balance_after_before_confirm():
    state = synced_state(612_000)
    state.packs = PACKS
    state.payment_method = {"brand": "Visa", "last4": "4242"}
    assert credits_draw.pack_label(PACKS[1]) == "250,000 cr — $475"
    layout = RecordingLayout()
    credits_draw.draw_buy_dialog(layout, state, operator=SimpleNamespace(pack="pack-250k"))
    assert layout.of_kind("prop")[0].property == "pack"
    assert figures(layout) == {"Available now": "612,000 cr", "Available after": "862,000 cr"}
    assert "Confirm charges $475 to Visa •••• 4242." in layout.texts()
    assert credits_draw.buy_refusal(state) is None


def test_without_an_api_key_buying_is_refused_with_the_way_out():
    refusal = credits_draw.buy_refusal(State(connection="unconfigured"))
    assert refusal == "No ACT3 API key: add one in Preferences > Add-ons > ACT3 Credits."


def test_a_viewer_is_told_to_ask_an_owner_or_admin():
    state = synced_state()
    state.me = Me(org_name="Studio", member_name="Vic", role="viewer", can_buy=False)
    refusal = credits_draw.buy_refusal(state)
    assert refusal is not None and "ask the organisation's owner or an admin" in refusal
    layout = RecordingLayout()
    credits_draw.draw_buy_dialog(layout, state, operator=SimpleNamespace(pack=""))
    assert layout.find("owner or an admin").alert
    assert "Loading credit packs…" in layout.texts()


def test_test_connection_result_reads_organisation_plan_and_role():
    me = Me.from_json(
        {"org": {"id": 1, "name": "Blue Studio", "plan": "pro"}, "member": {"name": "Ana", "role": "owner"}}
    )
    assert credits_draw.me_lines(me) == ["Organisation: Blue Studio", "Plan: Pro", "Signed in as Ana (owner)"]
    named = dataclasses.replace(me, member_name="Ana (owner)")  # names that already say the role are not repeated
    assert credits_draw.me_lines(named)[2] == "Signed in as Ana (owner)"


def test_preferences_say_where_the_key_and_url_come_from_but_never_the_key():
    prefs = SimpleNamespace(service_url="https://api.act3ai.com/v1", api_key="")
    layout = RecordingLayout()
    credits_draw.draw_preferences(
        layout, prefs, State(), "environment", "…c0de", True, url_in_use="http://127.0.0.1:8000/v1"
    )
    text = layout.text()
    assert "Using ACT3_API_URL: http://127.0.0.1:8000/v1" in text
    assert "Using the key from ACT3_API_KEY (…c0de)" in text
    layout.operator_button("act3.test_connection")
    stored = RecordingLayout()
    credits_draw.draw_preferences(stored, prefs, State(), "file", "…c0de", True, url_in_use=prefs.service_url)
    assert "Using ACT3_API_URL" not in stored.text()
    stored.operator_button("act3.forget_key")
