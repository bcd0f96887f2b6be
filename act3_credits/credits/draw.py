"""Credits: what the top bar, the Credits Detail panels, the Buy dialog and the preferences show.

Plain functions of `(layout, state, ...)` with no bpy import, so tests call them with a recording
layout and read what an artist would read. They only read the `State`; they never block, never touch
the network and never write Blender data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from ..core import formatting, limits, pricing
from ..core.client import public_url
from ..core.contract import Me
from ..core.state import HistoryRow, Spend, State
from ..core.values import value
from ..core.vocabulary import Kind
from ..widgets import DEFAULT_SIDEBAR, LIST_MARGINS, engine_name, figure_row, is_wide, tier_name, wrapped_label
from . import chart

ONLINE_ACCESS_HINT = "Turn it on in Preferences > System > Network > Allow Online Access."
OFFLINE_LINE = "Online access is off: nothing is sent to ACT3."


# `@value`: a frozen dataclass that costs nothing to define when the add-on is enabled
# (core/values.py).


@value
class Thresholds:
    """The low-balance lines from the preferences (fractions of the monthly allocation, and credits)."""

    warn: float
    critical: float
    custom: int

    def __init__(self, warn: float = 0.20, critical: float = 0.05, custom: int = 0) -> None:
        self.__dict__.update(warn=warn, critical=critical, custom=custom)

    def level(self, state: State) -> str:
        return state.alert_level(self.warn, self.critical, self.custom)


# ------------------------------------------------------------------------------------ top bar

LEVEL_ICONS = {"critical": "ERROR", "warn": "ERROR", "ok": "NONE"}


def header_icon(state: State, level: str) -> str:
    """One icon for the balance button: unreachable beats stale beats low, so nothing reads as live when it is not."""
    if state.connection in ("offline", "auth", "disabled", "unconfigured") and state.credits is not None:
        return "UNLINKED"
    if state.credits is not None and state.is_stale():
        return "TIME"
    return LEVEL_ICONS.get(level, "NONE")


def draw_header(layout: Any, state: State, thresholds: Thresholds) -> None:
    """What can still be spent, at the right end of the top bar: one button that opens Credits Detail.

    Low (under the warning line): a warning triangle. Very low: the same, on Blender's red alert colour.
    """
    level = thresholds.level(state)
    row = layout.row(align=True)
    row.alert = level == "critical"
    row.ui_units_x = header_units(state)
    row.operator("act3.open_credits", text=state.header_text(), icon=header_icon(state, level))


def header_units(state: State) -> float:
    """A width that holds the longest text this organisation's numbers can make ('8,750,000 cr ·
    875,000 held' on Pro), so the scene and view-layer selectors beside it never move when a batch
    starts holding credits or ends. In UI units (20 px at UI scale 1)."""
    c = state.credits
    allocation = c.monthly_allocation if c is not None and c.monthly_allocation > 0 else 875_000
    longest = f"{formatting.credits(allocation * 10)} · {formatting.credits(allocation, unit=False)} held"
    return round(len(longest) * 0.34 + 1.6, 1)  # about 6.8 px a character, and the icon


def header_tooltip(state: State, thresholds: Thresholds) -> str:
    """The balance button's tooltip: what the figures are, when they were confirmed, why they may be off."""
    c = state.credits
    if c is None:
        lines = [f"ACT3 balance not known yet: {state.header_text()}"]
    else:
        lines = [f"{formatting.credits(c.available)} available for new jobs, {state.as_of_text()}"]
        if c.held:
            lines.append(
                f"{formatting.credits(c.held)} held by running jobs, charged shot by shot "
                f"(balance {formatting.credits(c.total)})"
            )
        level = thresholds.level(state)
        if level != "ok":
            lines.append(low_balance_line(state, thresholds, level))
        if state.is_stale():
            lines.append(stale_line(state))
    if state.connection == "disabled":
        lines.append(OFFLINE_LINE)
    elif state.last_error:
        lines.append(state.last_error)
    lines.append("Click to open the credits details")
    return "\n".join(lines)


def stale_line(state: State) -> str:
    """Why the balance may be out of date, truthfully: it is not always a minute since the last sync."""
    if state.credits_from_cache or state.last_sync_monotonic is None:
        return "Not up to date: saved by an earlier session, not confirmed by ACT3 yet"
    if state.connection != "ok":
        return "Not up to date: ACT3 cannot be reached right now"
    return "Not up to date: the last sync is more than a minute old"


def low_balance_line(state: State, thresholds: Thresholds, level: str, short: bool = False) -> str:
    """Why the balance shows as low; `short` fits the sidebar, the tooltip has the long form."""
    c = state.credits
    if c is None:
        return ""
    if level == "critical":
        line = f"Very low: under {_percent(thresholds.critical)}"
    elif c.available < c.monthly_allocation * thresholds.warn:
        line = f"Low: under {_percent(thresholds.warn)}"
    else:
        return f"Below your line of {formatting.credits(thresholds.custom)}"
    return line + (" of monthly" if short else " of the monthly allocation available")


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


# ------------------------------------------------------------------------------ credits panel


@value
class Status:
    """The Credits Detail panel's one status line: a short text, its icon, and the whole story for its tooltip."""

    text: str
    icon: str
    tooltip: str
    alert: bool

    def __init__(self, text: str, icon: str, tooltip: str, alert: bool = False) -> None:
        self.__dict__.update(text=text, icon=icon, tooltip=tooltip, alert=alert)


def status(state: State, thresholds: Thresholds, online_access: bool) -> Status:
    """Always exactly one line, so the panels below never move when the link or the balance changes."""
    c = state.credits
    when = formatting.clock(state.last_sync_wall) if state.last_sync_wall else None
    if not online_access or state.connection == "disabled":
        return Status("Online access is off", "UNLINKED", f"{OFFLINE_LINE} {ONLINE_ACCESS_HINT}")
    if state.connection == "unconfigured":
        return Status("No API key: see Preferences", "UNLOCKED", state.last_error or "No ACT3 API key.", True)
    if state.connection == "auth":
        return Status("API key refused", "ERROR", state.last_error or "ACT3 refused the API key.", True)
    if state.connection == "offline":
        text = f"Offline · {state.as_of_text()}" if c is not None else "ACT3 unreachable"
        return Status(text, "UNLINKED", state.last_error or stale_line(state), True)
    if c is None:
        return Status("Connecting to ACT3…", "SORTTIME", "Waiting for the first answer from ACT3.")
    if state.is_stale():
        return Status(f"Not up to date · {when or '—'}", "TIME", stale_line(state))
    level = thresholds.level(state)
    if level != "ok":
        return Status(
            low_balance_line(state, thresholds, level, short=True),
            "ERROR",
            low_balance_line(state, thresholds, level),
            level == "critical",
        )
    return Status(f"Up to date · {when}", "CHECKMARK", f"Confirmed by ACT3 at {when}.")


def draw_credits(
    layout: Any, state: State, thresholds: Thresholds, online_access: bool, width: float = 0, project: str = ""
) -> None:
    """The Credits Detail panel (3D View sidebar, ACT3 tab, and the top bar's popover).

    Every row is always there (a dash until the first sync) and changes only its text, so nothing
    below it moves while the artist reaches for a button. Messages go to Blender's reports.
    """
    c = state.credits
    level = thresholds.level(state)

    def cr(value: int | None) -> str:
        return formatting.credits(value if c is not None else None)

    row = layout.row()
    row.alert = level == "critical"
    icon = header_icon(state, level)
    figure_row(row, "Available", cr(c.available if c else None), icon="BLANK1" if icon == "NONE" else icon)
    figure_row(layout, "Held by jobs", cr(c.held if c else None), icon="SORTTIME")

    box = layout.box()
    box.label(text="Monthly Allocation", icon="TIME")
    if c is not None:
        box.progress(
            factor=c.monthly_fraction,
            type="BAR",
            text=f"{formatting.credits(c.monthly_remaining, unit=False)} of {formatting.credits(c.monthly_allocation)}",
        )
    else:
        box.progress(factor=0.0, type="BAR", text="—")
    box.label(text=billing_line(c.billing_date if c else ""))
    rw = runway(state)
    row = box.row()
    row.alert = rw.alert
    row.alignment = "LEFT"  # reads on from the refill line above, not centred like a button
    row.operator("act3.runway", text=rw.text, icon=rw.icon, emboss=False)
    row = box.row()
    row.alert = rw.alert
    figure_row(row, rw.label, rw.figure)

    box = layout.box()
    box.label(text="Rollover Bank", icon="RECOVER_LAST")
    figure_row(box, "Rolled over", cr(c.rollover_rolled if c else None))
    figure_row(box, "Cap", cr(c.rollover_cap if c else None))

    box = layout.box()
    box.label(text="Purchased", icon="PACKAGE")
    figure_row(box, "Never expire", cr(c.rollover_purchased if c else None))

    if project:
        draw_project_budget(layout.box(), project, limits.budgets_by_project(state.budgets).get(project))

    st = status(state, thresholds, online_access)
    row = layout.row()
    row.alert = st.alert
    row.operator("act3.status", text=st.text, icon=st.icon, emboss=False)

    row = layout.row(align=True)
    row.operator("act3.refresh", text="Refresh", icon="FILE_REFRESH")
    row.operator("act3.buy_credits", text="Buy Credits", icon="ADD")


# ------------------------------------------------------------------------------------ runway


@value
class Runway:
    """The runway under the monthly allocation: how long the credits last at the recent pace (a
    button whose tooltip has the whole sentence), and what the next refill will do (a figure row).
    Always these two rows, a dash before the first forecast."""

    text: str
    icon: str
    label: str
    figure: str
    tooltip: str
    alert: bool

    def __init__(self, text: str, icon: str, label: str, figure: str, tooltip: str, alert: bool = False) -> None:
        self.__dict__.update(text=text, icon=icon, label=label, figure=figure, tooltip=tooltip, alert=alert)


def day_month(when: dt.datetime) -> str:
    """'1 Dec' for a UTC moment (billing dates are 00:00 UTC: the date itself, not the local one)."""
    return f"{when.day} {when.strftime('%b')}"


def days_text(days: float) -> str:
    """'≈ 9 days', '≈ 1.5 days', '≈ 7 hours' from a runway rounded down to a tenth of a day."""
    if days >= 3:
        return f"≈ {int(days)} days"
    if days >= 1:
        return f"≈ {days:g} day{'' if days == 1 else 's'}"
    hours = int(days * 24)
    return f"≈ {hours} hour{'' if hours == 1 else 's'}" if hours else "Under an hour"


def runway(state: State) -> Runway:
    """'≈ 9 days at this week's pace' and 'Lapses at refill  350,000 cr' (or 'Runs out  27 Nov' in the
    alert style when the credits end before the next refill); the tooltip reads as one sentence:
    '≈ 9 days at this week's pace · refills 1 Dec · 350,000 cr over the cap will lapse'."""
    spend = state.spend
    if spend is None:
        return Runway("Runway: —", "SORTTIME", "At the refill", "—", "The runway comes with ACT3's first answer.")
    f = spend.forecast
    weekly = f.pace_7d > 0
    pace = "this week's pace" if weekly else "this month's pace"
    per_day = f.pace_7d if weekly else f.pace_30d
    refill = day_month(f.next_refill_at)
    before_refill = f.runs_out_at is not None and f.runs_out_at < f.next_refill_at
    if f.pace_7d <= 0 and f.pace_30d <= 0 and f.runs_out_at is None:
        text, said = "Runway: no spend in 30 days", "no renders charged in the last 30 days, so no runway"
    elif f.days_left is None:
        text = f"Over a year at {pace}"
        said = text[0].lower() + text[1:]
    else:
        text = f"{days_text(f.days_left)} at {pace}"
        said = text
    parts = [said]
    if before_refill and f.runs_out_at is not None:
        label, figure = "Runs out", day_month(f.runs_out_at)
        parts.append(f"runs out {figure}, before the refill on {refill}")
    else:
        parts.append(f"refills {refill}")
        if f.will_expire > 0:
            label, figure = "Lapses at refill", formatting.credits(f.will_expire)
            parts.append(f"{figure} over the cap will lapse")
        else:
            label, figure = "Rolls over", formatting.credits(f.will_roll_over)
            parts.append(f"{figure} will roll over" if f.will_roll_over else "nothing left to roll over")
    sentence = " · ".join(parts)
    lines = [sentence[0].upper() + sentence[1:]]
    if per_day:
        lines.append(
            f"Pace: {formatting.credits(per_day)} a day (the last {7 if weekly else 30} days), spending the "
            f"{formatting.credits(f.available)} available: monthly credits first, then the bank."
        )
    if not before_refill:
        lines.append(
            f"At the refill: {formatting.credits(f.monthly_left_at_refill)} monthly left, "
            f"{formatting.credits(f.will_roll_over)} roll into the bank, {formatting.credits(f.will_expire)} "
            "over the rollover cap lapse."
        )
    lines.append(f"As of {formatting.clock(f.as_of)}. Click to update.")
    return Runway(text, "ERROR" if before_refill else "SORTTIME", label, figure, "\n".join(lines), before_refill)


def draw_project_budget(box: Any, project: str, budget: limits.Budget | None) -> None:
    """The scene's project budget: spent, held and left ("not set" and dashes without one; the same
    rows either way, so nothing moves when a budget arrives)."""
    box.label(text=project if budget else f"{project}: no budget", icon="FILE_BLEND")
    label = "Total budget" if budget and budget.period == "total" else "Budget per period"
    figure_row(box, label, formatting.credits(budget.credits) if budget else "not set")
    figure_row(box, "Spent", formatting.credits(budget.spent) if budget else "—")
    figure_row(box, "Held", formatting.credits(budget.held) if budget else "—")
    row = figure_row(box, "Left", formatting.credits(budget.left) if budget else "—")
    row.alert = budget is not None and budget.left <= 0


def billing_line(billing_date: str) -> str:
    """'Refills 1 Dec (in 3 days)'."""
    days = formatting.days_until(billing_date)
    if days is None:
        return "Next refill not known yet"
    when = "today" if days == 0 else "tomorrow" if days == 1 else f"in {days} days"
    return f"Refills {formatting.day_month(billing_date)} ({when})"


# ------------------------------------------------------------------------------------- spend


def series(state: State) -> chart.Series | None:
    """The chart's numbers from the cached spend (None before the first answer)."""
    spend = state.spend
    c = state.credits
    if spend is None:
        return None
    f = spend.forecast
    start, end = _utc(spend.by_tier.start), _utc(spend.by_tier.end)
    if start is None or end is None or end <= start:
        return None
    days = max(1, round((end - start).total_seconds() / 86_400))
    tiers, per_day = [], []
    for tier, usage in spend.days:
        by_key = {g.key[:10]: g.credits for g in usage.groups}
        values = tuple(by_key.get((start + dt.timedelta(days=i)).date().isoformat(), 0) for i in range(days))
        tiers.append(tier)
        per_day.append(values)
    return chart.Series(
        start=start,
        end=end,
        tiers=tuple(tiers),
        per_day=tuple(per_day),
        now=f.as_of,
        allocation=c.monthly_allocation if c is not None else 0,
        pace=f.pace_7d or f.pace_30d,
        available=f.available,
    )


def _utc(text: str) -> dt.datetime | None:
    when = formatting.parse_time(text)
    if when is None:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def spend_tiers(state: State) -> list[tuple[str, int, int]]:
    """(tier id, credits, shots) for the plan's tiers and any other tier spent on, in the card's order."""
    spend = state.spend
    groups = {g.key: g for g in spend.by_tier.groups} if spend is not None else {}
    card = state.rate_card or pricing.DEFAULT_RATE_CARD
    allowed = set(state.allowed_tiers) or {t.id for t in card.tiers}
    out = []
    for tier in card.tiers:
        g = groups.get(tier.id)
        if g is not None or tier.id in allowed:
            out.append((tier.id, g.credits if g else 0, g.shots if g else 0))
    known = {t.id for t in card.tiers}
    out += [(g.key, g.credits, g.shots) for g in groups.values() if g.key not in known]
    return out


def period_text(spend: Spend) -> tuple[str, str]:
    """('1 Nov', '30 Nov'): the period's first and last day (its end is the next billing date, exclusive)."""
    start, end = _utc(spend.by_tier.start), _utc(spend.by_tier.end)
    if start is None or end is None:
        return "", ""
    return day_month(start), day_month(end - dt.timedelta(days=1))


@value
class ChartIcon:
    """The chart as Blender shows it: a preview's icon id and the `template_icon` scale that draws it
    pixel for pixel; `icons` are the legend's colour swatches by name (tier ids, 'allocation', 'forecast')."""

    icon_id: int
    scale: float
    icons: tuple[tuple[str, int], ...]

    def __init__(self, icon_id: int, scale: float, icons: tuple[tuple[str, int], ...] = ()) -> None:
        self.__dict__.update(icon_id=icon_id, scale=scale, icons=icons)

    def icon(self, name: str) -> int:
        return dict(self.icons).get(name, 0)


def draw_spend(
    layout: Any, state: State, picture: ChartIcon | None, shots_here: Iterable[str] = (), width: float = 0
) -> None:
    """The Spend sub-panel: the chart, what its line and dashes say, spend by tier, the top 10 shots.

    Reads the cached spend only. A top shot is a button that selects it in the Shots list, greyed
    out when this .blend has no shot of that name.
    """
    spend = state.spend
    if spend is None or picture is None:
        box = layout.box()
        box.label(text="Spend: waiting for ACT3…" if state.connection in ("ok", "connecting") else "Spend: —",
                  icon="SORTTIME")  # fmt: skip
        return
    icon = picture.icon
    col = layout.column(align=True)
    col.template_icon(icon_value=picture.icon_id, scale=picture.scale)
    first, last = period_text(spend)
    split = col.split(factor=0.5)
    split.label(text=first)
    right = split.row()
    right.alignment = "RIGHT"
    right.label(text=last)

    s = series(state)
    box = layout.box()
    if s is not None and s.allocation:
        figure_row(box, "Monthly", formatting.credits(s.allocation), icon_value=icon("allocation"))
    pace = s.pace if s is not None else 0
    figure_row(box, "Forecast", f"{formatting.credits(pace)}/day" if pace else "—", icon_value=icon("forecast"))

    box = layout.box()
    box.label(text="Spent this period")
    for tier, credits, _shots in spend_tiers(state):
        figure_row(box, tier_name(tier, state.rate_card), formatting.credits(credits), icon_value=icon(tier))
    figure_row(box, "Total", formatting.credits(spend.by_tier.total.credits))

    here = set(shots_here)
    box = layout.box()
    box.label(text="Most expensive shots")
    if not spend.top_shots.groups:
        box.label(text="No renders charged yet")
    for g in spend.top_shots.groups:
        split = box.split(factor=0.6)
        sub = split.row()
        sub.enabled = g.key in here
        op = sub.operator("act3.select_shot", text=g.key or "(no name)", icon="RESTRICT_SELECT_OFF")
        op.shot = g.key
        right = split.row()
        right.alignment = "RIGHT"
        right.label(text=formatting.credits(g.credits))


def spend_table(state: State) -> list[str]:
    """The Spend panel as plain text lines, for `blender -b` (act3.print_spend): tiers, top shots, days."""
    spend = state.spend
    if spend is None:
        return ["ACT3 spend: not known yet (no answer from ACT3)."]
    first, last = period_text(spend)
    lines = [f"ACT3 spend {first} – {last} (charged renders)", runway(state).tooltip.splitlines()[0]]
    lines.append(f"{'tier':<16}{'credits':>14}{'shots':>8}")
    for tier, credits, shots in spend_tiers(state):
        lines.append(f"{tier_name(tier, state.rate_card):<16}{credits:>14,}{shots:>8,}")
    total = spend.by_tier.total
    lines.append(f"{'Total':<16}{total.credits:>14,}{total.shots:>8,}")
    lines.append(f"{'most expensive shots':<24}{'credits':>14}")
    # Ranked here: the panel may hold its rows' order during a batch (sync._show_spend); a table has no pointer.
    for g in sorted(spend.top_shots.groups, key=lambda g: (-g.credits, g.key)):
        lines.append(f"{g.key:<24}{g.credits:>14,}")
    s = series(state)
    if s is not None:
        tiers = [tier_name(t, state.rate_card) for t in s.tiers]
        lines.append(f"{'day':<12}" + "".join(f"{t:>10}" for t in tiers) + f"{'to date':>12}")
        for day in range(min(s.today + 1, s.days)):
            values = [v[day] for v in s.per_day]
            if not any(values):
                continue  # the days with renders only
            when = (s.start + dt.timedelta(days=day)).date().isoformat()
            lines.append(f"{when:<12}" + "".join(f"{v:>10,}" for v in values) + f"{s.spent_by(day):>12,}")
    return lines


# ------------------------------------------------------------------------------------ history

TIER_FILTER_ITEMS = [("ALL", "All tiers", "Every quality tier")] + [
    (t.id, t.name, f"Only {t.name} renders") for t in pricing.TIERS
]
KIND_LABELS: dict[str, str] = {
    Kind.RENDER: "Render",
    Kind.PURCHASE: "Purchase",
    Kind.REFILL: "Monthly refill",
    Kind.ROLLOVER: "Rollover",
    Kind.EXPIRY: "Expired",
    Kind.REFUND: "Refund",
    Kind.FAILED: "Failed",
    Kind.CANCELED: "Canceled",
}


@value
class HistoryCells:
    """One history row as the list reads it, and its tooltip."""

    date: str
    shot: str
    tier: str
    cost: str
    tooltip: str

    def __init__(self, date: str, shot: str, tier: str, cost: str, tooltip: str = "") -> None:
        self.__dict__.update(date=date, shot=shot, tier=tier, cost=cost, tooltip=tooltip)


def shot_tier_costs(rows: Iterable[HistoryRow]) -> dict[str, dict[str, int]]:
    """shot -> tier -> what its newest render at that tier cost (positive), from history rows newest first."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.kind == Kind.RENDER and row.shot and row.tier:
            out.setdefault(row.shot, {}).setdefault(row.tier, -row.credits)
    return out


def tier_costs(row: HistoryRow, costs: Mapping[str, Mapping[str, int]], card: pricing.RateCard) -> str:
    """'Was High worth it?': for a shot rendered at Draft and at a higher tier, both costs, one line:
    'sh010 at Draft: 520 cr · at High: 2,080 cr (4× Draft)'. `costs` is `shot_tier_costs` of the
    loaded history. Empty when this shot has no such pair."""
    if row.kind != Kind.RENDER or not row.shot or not row.tier:
        return ""
    newest = costs.get(row.shot, {})
    draft = newest.get("draft")
    higher = [t.id for t in card.tiers if t.id != "draft" and t.id in newest]
    if draft is None or not higher:
        return ""
    parts = [f"{row.shot} at Draft: {formatting.credits(draft)}"]
    for tier in higher:
        ratio = f" ({newest[tier] / draft:.3g}× Draft)" if draft > 0 else ""
        parts.append(f"at {tier_name(tier, card)}: {formatting.credits(newest[tier])}{ratio}")
    return " · ".join(parts)


def history_cells(
    row: HistoryRow, card: pricing.RateCard | None = None, costs: Mapping[str, Mapping[str, int]] | None = None
) -> HistoryCells:
    """Date, shot (or what the line was: 'Monthly refill'), tier and signed credits; every detail in the tooltip.

    `costs` (`shot_tier_costs` of the loaded history): a shot rendered at Draft and at a higher tier
    shows both costs in its tooltip."""
    card = card or pricing.DEFAULT_RATE_CARD
    tier = tier_name(row.tier) if row.tier else ""
    shot = row.shot if row.kind == Kind.RENDER and row.shot else KIND_LABELS.get(row.kind, row.kind)
    details = [formatting.day(row.at), shot or ""]
    if row.kind == Kind.RENDER:
        details += [engine_name(row.engine or "", card), tier, f"{row.duration_s} s" if row.duration_s else ""]
    details.append(f"{formatting.signed_credits(row.credits)} cr")
    if row.member:
        details.append(row.member)
    tooltip = " · ".join(d for d in details if d)
    compared = tier_costs(row, costs or {}, card)
    if compared:
        tooltip += "\n" + compared
    return HistoryCells(
        formatting.short_date(row.at), shot or "", tier, formatting.signed_credits(row.credits), tooltip
    )


# At the default width a history row gives its figure just the room that figure takes, and the shot
# the rest: a render costs at most a few thousand credits ("−14,700"), so a studio's "sq010_sh0010"
# reads whole beside it, while a refill's "+5,000,000" takes more from a short "Monthly refill". The
# date keeps one width on every row, and the figure is right-aligned, so the columns read straight.
DATE_COLUMN = 50  # "25 Nov" and a label's margins


def figure_width(text: str) -> float:
    """About how wide Blender's default font draws a signed figure ('−12,480'), with a label's
    margins, in px at UI scale 1: 7 px a digit or sign, 3 a separator (measured with blf at 11 pt,
    at UI scale 1.0 and 1.25)."""
    return sum(3 if ch in ",." else 7 for ch in text) + 14


def draw_history_item(layout: Any, date: str, shot: str, tier: str, cost: str, width: float = DEFAULT_SIDEBAR) -> None:
    """One row of ACT3_UL_history: date, shot (or what the line was), tier when there is room, signed credits.

    The credits figure has its own right-aligned column and always reads whole; a refill or a
    purchase spans the shot and tier columns ('Monthly refill').
    """
    if is_wide(width):
        split = layout.split(factor=0.68)
        left = split.split(factor=0.3)
    else:
        inner = max(width - LIST_MARGINS, 1.0)
        figure = min(max(figure_width(cost) / inner, 0.2), 0.5)
        split = layout.split(factor=1.0 - figure)
        left = split.split(factor=min(DATE_COLUMN / (inner * (1.0 - figure)), 0.5))
    left.label(text=date)
    if is_wide(width) and tier:
        names = left.split(factor=0.55)
        names.label(text=shot)
        names.label(text=tier)
    else:
        left.label(text=shot)
    right = split.row()
    right.alignment = "RIGHT"
    right.label(text=cost)


def history_footer(history: Any) -> str:
    """The one line under the list: how much is loaded, or that a filter matched nothing."""
    count = len(history.rows)
    if history.loaded_once and count == 0:
        what = " and ".join(
            part
            for part in (f"'{history.shot}'" if history.shot else "", tier_name(history.tier) if history.tier else "")
            if part
        )
        return f"No matches for {what}" if what else "No transactions yet"
    if not history.loaded_once:
        return "Loading the history…" if history.loading else "History not loaded yet"
    return f"{count} row{'' if count == 1 else 's'} loaded" + ("" if history.next_cursor else ", all shown")


def draw_history(layout: Any, state: State, ui: Any, online_access: bool) -> None:
    """The Transaction History sub-panel. `ui` is the WindowManager's ACT3 group (filters, mirrored rows)."""
    history = state.history
    row = layout.row(align=True)
    row.prop(ui, "history_tier", text="")
    row.prop(ui, "history_shot", text="", icon="VIEWZOOM")

    layout.template_list(
        "ACT3_UL_history", "", ui, "history_rows", ui, "history_index", rows=6, item_dyntip_propname="tooltip"
    )
    layout.label(text=history_footer(history))

    row = layout.row(align=True)
    sub = row.row(align=True)
    sub.enabled = history.next_cursor is not None and not history.loading and online_access
    if history.loading:
        sub.operator("act3.history_more", text="Loading…", icon="SORTTIME")
    else:
        sub.operator("act3.history_more", text="Load More", icon="TRIA_DOWN")
    row.operator("act3.export_history_csv", text="CSV", icon="EXPORT")

    totals = history.tier_totals()
    box = layout.box()
    box.label(text="Spent per tier (loaded rows)")
    for tier in pricing.TIERS:
        figure_row(box, tier.name, formatting.credits(totals.get(tier.id, 0)))


# ------------------------------------------------------------------------------------ buying


def pack_label(pack: dict[str, Any]) -> str:
    """'250,000 cr — $475'."""
    return f"{formatting.credits(int(pack.get('credits', 0)))} — {pack.get('price', '')}"


def buy_refusal(state: State) -> str | None:
    """Why this key may not buy, in words the artist can act on, or None (also when not known yet)."""
    if state.connection == "unconfigured":
        return "No ACT3 API key: add one in Preferences > Add-ons > ACT3 Credits."
    if state.connection == "auth":
        return "ACT3 refused the API key: paste a valid one in Preferences > Add-ons > ACT3 Credits."
    me = state.me
    if me is not None and not me.can_buy:
        role = me.role or "member"
        return f"Your role ({role}) may not buy credits: ask the organisation's owner or an admin."
    return None


def draw_buy_dialog(layout: Any, state: State, operator: Any) -> None:
    """The Buy Credits dialog: the packs, then exactly what Confirm does: the charge, the card, the balance after."""
    c = state.credits
    if not state.packs:
        layout.label(text="Loading credit packs…", icon="SORTTIME")
    else:
        layout.label(text="Credit pack:")
        col = layout.column(align=True)
        col.prop(operator, "pack", expand=True)
    chosen = next((p for p in state.packs if str(p.get("id")) == getattr(operator, "pack", "")), None)
    layout.separator()
    col = layout.column()
    figure_row(col, "Available now", formatting.credits(c.available) if c else "—")
    after = c.available + int(chosen.get("credits", 0)) if c is not None and chosen is not None else None
    figure_row(col, "Available after", formatting.credits(after))
    refusal = buy_refusal(state)
    if refusal:
        row = layout.row()
        row.alert = True
        row.label(text=refusal, icon="ERROR")
    elif chosen is not None and state.payment_method:
        layout.label(
            text=f"Confirm charges {chosen.get('price', '')} to {formatting.payment_method(state.payment_method)}.",
            icon="INFO",
        )
    else:
        layout.label(text=formatting.payment_method(state.payment_method), icon="INFO")


# -------------------------------------------------------------------------------- preferences


def draw_connection(layout: Any, state: State, online_access: bool, width: int = 60) -> None:
    """Connection problems in the preferences, in full (the sidebar has the short status line)."""
    if not online_access or state.connection == "disabled":
        wrapped_label(layout, OFFLINE_LINE, icon="UNLINKED", width=width)
        wrapped_label(layout, ONLINE_ACCESS_HINT, width=width)
        return
    if state.last_error:
        row = layout.row()
        row.alert = True
        wrapped_label(row, state.last_error, icon="ERROR", width=width)
    elif state.credits is not None and state.is_stale():
        layout.label(text=f"Not up to date: {state.as_of_text()}", icon="TIME")
    if state.last_message:
        wrapped_label(layout, state.last_message, icon="INFO", width=width)


def me_lines(me: Me | None) -> list[str]:
    """'Organisation: …', 'Plan: …', 'Role: …' from /v1/me."""
    if me is None:
        return []
    plan_name = pricing.PLANS[me.plan].name if me.plan in pricing.PLANS else me.plan
    name, role = me.member_name or "?", me.role
    who = name if name.endswith(f"({role})") else f"{name} ({role})"
    return [f"Organisation: {me.org_name}", f"Plan: {plan_name}", f"Signed in as {who}"]


def draw_preferences(
    layout: Any, prefs: Any, state: State, key_source: str, key_hint: str, online_access: bool, url_in_use: str = ""
) -> None:
    """The add-on preferences. `key_source` says where the key in use comes from; never the key itself.

    `url_in_use` is the URL the sync uses, shown when ACT3_API_URL overrides the field.
    """
    col = layout.column()
    col.prop(prefs, "service_url")
    if url_in_use and url_in_use != prefs.service_url.strip():
        col.label(text=f"Using ACT3_API_URL: {public_url(url_in_use)}", icon="INFO")
    col.prop(prefs, "api_key", text="API Key", placeholder="Paste a key to store it")
    row = col.row()
    if key_source == "environment":
        row.label(text=f"Using the key from ACT3_API_KEY ({key_hint})", icon="LOCKED")
    elif key_source == "file":
        row.label(text=f"Key stored for this user ({key_hint})", icon="LOCKED")
        row.operator("act3.forget_key", text="Forget Key", icon="X")
    elif key_source == "preferences":
        row.label(text=f"Key in use until Blender closes ({key_hint}): it could not be stored", icon="ERROR")
        row.operator("act3.forget_key", text="Forget Key", icon="X")
    else:
        row.label(text="No API key: paste one from your ACT3 organisation settings", icon="UNLOCKED")

    box = layout.box()
    box.label(text="Low-balance warnings")
    row = box.row(align=True)
    row.prop(prefs, "warn_percent")
    row.prop(prefs, "critical_percent")
    box.prop(prefs, "custom_threshold")

    box = layout.box()
    box.operator("act3.test_connection", icon="URL")
    for line in me_lines(state.me):
        box.label(text=line)
    draw_connection(box, state, online_access)
    draw_spending_limits(layout.box(), state)


def draw_spending_limits(box: Any, state: State) -> None:
    """The member's cap and the organisation's auto top-up; only the owner gets the button to change it."""
    box.label(text="Spending limits", icon="MOD_LENGTH")
    cap = limits.MemberCap.from_me(state.me)
    figure_row(box, "Your cap", formatting.credits(cap.credits_per_period) if cap else "no cap")
    figure_row(box, "Left this period", formatting.credits(cap.left if cap else None))
    for label, figure in limits.auto_top_up_rows(state.auto_top_up, state.packs):
        figure_row(box, label, figure)
    role = state.me.role if state.me is not None else ""
    if role == "owner":
        box.operator("act3.set_auto_top_up", text="Set Auto Top-Up…", icon="ADD")
    else:
        box.label(text="Only the owner sets auto top-up.", icon="LOCKED")
