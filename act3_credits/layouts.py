"""What the top bar, the sidebar panels, the Buy dialog and the preferences show.

Plain functions of `(layout, state, ...)` with no bpy import, so tests call them with a recording
layout and read what an artist would read. They only read the `State`; they never block, never touch
the network and never write Blender data.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from .core import formatting, pricing
from .core.state import HistoryRow, State

ONLINE_ACCESS_HINT = "Turn it on in Preferences > System > Network > Allow Online Access."
OFFLINE_LINE = "Online access is off: nothing is sent to ACT3."
CATEGORY = "ACT3"


@dataclass(frozen=True)
class Thresholds:
    """The low-balance lines from the preferences (fractions of the monthly allocation, and credits)."""

    warn: float = 0.20
    critical: float = 0.05
    custom: int = 0

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
    """The balance at the right end of the top bar: one button that opens the Credits Detail panel."""
    level = thresholds.level(state)
    row = layout.row(align=True)
    row.alert = level == "critical"
    row.operator("act3.open_credits", text=state.header_text(), icon=header_icon(state, level))


def header_tooltip(state: State, thresholds: Thresholds) -> str:
    """The balance button's tooltip: 'Balance 245,000 cr, as of 14:02', and why it may be off."""
    if state.credits is None:
        lines = [f"ACT3 balance not known yet: {state.header_text()}"]
    else:
        lines = [f"Balance {state.header_text()}, {state.as_of_text()}"]
        if state.credits.held:
            lines.append(
                f"{formatting.credits(state.credits.held)} held by unfinished jobs: "
                f"{formatting.credits(state.credits.available)} available for new ones"
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
        line = f"Very low balance: under {_percent(thresholds.critical)}"
    elif c.available < c.monthly_allocation * thresholds.warn:
        line = f"Low balance: under {_percent(thresholds.warn)}"
    else:
        return f"Below your warning line of {formatting.credits(thresholds.custom)}"
    return line + ("" if short else " of the monthly allocation")


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


# ------------------------------------------------------------------------------ credits panel


def wrapped_label(layout: Any, text: str, icon: str = "NONE", width: int = 40) -> None:
    """A long line as several labels (Blender cuts a label's middle out instead of wrapping it)."""
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width=max(12, width)) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")


def draw_connection(layout: Any, state: State, online_access: bool, width: int = 40) -> None:
    """Connection problems as one readable line (and how to fix online access)."""
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


def draw_credits(layout: Any, state: State, thresholds: Thresholds, online_access: bool, width: int = 40) -> None:
    """The Credits Detail panel (3D View sidebar, ACT3 tab, and the top bar's popover).

    `width` is about how many characters fit on a line, for the messages that wrap.
    """
    c = state.credits
    level = thresholds.level(state)

    row = layout.row()
    row.alert = level == "critical"
    row.label(text=f"Balance: {state.header_text()}", icon=header_icon(state, level))
    if c is not None and c.held:
        layout.label(text=f"Available for new jobs: {formatting.credits(c.available)}")
    if c is not None and level != "ok":
        warn = layout.row()
        warn.alert = level == "critical"
        warn.label(text=low_balance_line(state, thresholds, level, short=True))

    draw_connection(layout, state, online_access, width)

    if c is not None:
        box = layout.box()
        box.label(text="Monthly Allocation", icon="TIME")
        box.progress(
            factor=c.monthly_fraction,
            type="BAR",
            text=f"{formatting.credits(c.monthly_remaining, unit=False)} of {formatting.credits(c.monthly_allocation)}",
        )
        box.label(text=billing_line(c.billing_date))

        box = layout.box()
        box.label(text="Rollover Bank", icon="RECOVER_LAST")
        _pair(box, "Banked", formatting.credits(c.rollover_bank))
        _pair(box, "Cap", formatting.credits(c.rollover_cap))
        _pair(box, "From purchases", formatting.credits(c.rollover_purchased))

        box = layout.box()
        _pair(box, "Held by jobs", formatting.credits(c.held))
        _pair(box, "Total", formatting.credits(c.total))

    row = layout.row(align=True)
    row.operator("act3.refresh", text="Refresh", icon="FILE_REFRESH")
    row.operator("act3.buy_credits", text="Buy Credits", icon="ADD")
    if state.last_message:
        wrapped_label(layout, state.last_message, icon="INFO", width=width)


def billing_line(billing_date: str) -> str:
    days = formatting.days_until(billing_date)
    if days is None:
        return "Next billing date not known"
    when = "today" if days == 0 else "tomorrow" if days == 1 else f"in {days} days"
    return f"Next billing {billing_date[:10]} ({when})"


def _pair(layout: Any, label: str, value: str) -> None:
    split = layout.split(factor=0.5)
    split.label(text=label)
    split.label(text=value)


# ------------------------------------------------------------------------------------ history

TIER_FILTER_ITEMS = [("ALL", "All tiers", "Every quality tier")] + [
    (t.id, t.name, f"Only {t.name} renders") for t in pricing.TIERS
]
KIND_LABELS = {
    "render": "Render",
    "purchase": "Purchase",
    "refill": "Monthly refill",
    "rollover": "Rollover",
    "expiry": "Expired",
    "refund": "Refund",
}


# The list is narrow (a sidebar): Standard reads "Std" there; the row's tooltip has every detail.
TIER_SHORT = {"standard": "Std"}


@dataclass(frozen=True)
class HistoryCells:
    """One history row as the list reads it, and its tooltip."""

    date: str
    shot: str
    tier: str
    cost: str
    tooltip: str = ""


def history_cells(row: HistoryRow) -> HistoryCells:
    tier = TIER_SHORT.get(row.tier, tier_name(row.tier)) if row.tier else ""
    shot = row.shot if row.kind == "render" and row.shot else KIND_LABELS.get(row.kind, row.kind)
    details = [formatting.day(row.at), shot or ""]
    if row.kind == "render":
        details += [row.engine or "", tier_name(row.tier or ""), f"{row.duration_s} s" if row.duration_s else ""]
    details.append(f"{formatting.signed_credits(row.credits)} cr")
    if row.member:
        details.append(row.member)
    tooltip = " · ".join(d for d in details if d)
    return HistoryCells(
        formatting.short_date(row.at), shot or "", tier, formatting.signed_credits(row.credits), tooltip
    )


def tier_name(tier_id: str) -> str:
    for t in pricing.TIERS:
        if t.id == tier_id:
            return t.name
    return tier_id


def draw_history_item(layout: Any, date: str, shot: str, tier: str, cost: str) -> None:
    """One row of ACT3_UL_history: date, shot (or what the line was), tier, signed credits."""
    split = layout.split(factor=0.23)
    split.label(text=date)
    split = split.split(factor=0.32)
    split.label(text=shot)
    split = split.split(factor=0.36)
    split.label(text=tier)
    right = split.row()
    right.alignment = "RIGHT"
    right.label(text=cost)


def draw_history(layout: Any, state: State, ui: Any, online_access: bool) -> None:
    """The Transaction History sub-panel. `ui` is the WindowManager's ACT3 group (filters, mirrored rows)."""
    history = state.history
    row = layout.row(align=True)
    row.prop(ui, "history_tier", text="")
    row.prop(ui, "history_shot", text="", icon="VIEWZOOM")

    layout.template_list(
        "ACT3_UL_history", "", ui, "history_rows", ui, "history_index", rows=6, item_dyntip_propname="tooltip"
    )

    row = layout.row(align=True)
    sub = row.row(align=True)
    sub.enabled = history.next_cursor is not None and not history.loading and online_access
    if history.loading:
        sub.operator("act3.history_more", text="Loading…", icon="SORTTIME")
    else:
        sub.operator("act3.history_more", text="Load more", icon="TRIA_DOWN")
    row.operator("act3.export_history_csv", text="Export CSV", icon="EXPORT")

    count = len(history.rows)
    loaded = f"{count} row{'' if count == 1 else 's'} loaded" + ("" if history.next_cursor else ", all shown")
    layout.label(text=loaded)
    totals = history.tier_totals()
    if totals:
        box = layout.box()
        box.label(text="Spent per tier (loaded rows)")
        for tier in sorted(totals, key=_tier_order):
            _pair(box, tier_name(tier), formatting.credits(totals[tier]))


def _tier_order(tier_id: str) -> int:
    ids = [t.id for t in pricing.TIERS]
    return ids.index(tier_id) if tier_id in ids else len(ids)


# ------------------------------------------------------------------------------------ buying


def pack_label(pack: dict[str, Any]) -> str:
    """'250,000 cr — $475'."""
    return f"{formatting.credits(int(pack.get('credits', 0)))} — {pack.get('price', '')}"


def buy_refusal(state: State) -> str | None:
    """Why this member may not buy, in words they can act on, or None (also when not known yet)."""
    me = state.me
    if me and me.get("can_buy") is False:
        role = (me.get("member") or {}).get("role", "member")
        return f"Your role ({role}) may not buy credits: ask the organisation's owner or an admin."
    return None


def draw_buy_dialog(layout: Any, state: State, operator: Any) -> None:
    """The Buy Credits dialog: the packs, the card on file and what the balance will be."""
    c = state.credits
    if c is not None:
        layout.label(text=f"Balance now: {state.header_text()}")
    if not state.packs:
        layout.label(text="Loading credit packs…", icon="SORTTIME")
    else:
        layout.label(text="Credit pack:")
        col = layout.column(align=True)
        col.prop(operator, "pack", expand=True)
    layout.label(text=f"Paid with {formatting.payment_method(state.payment_method)}")
    refusal = buy_refusal(state)
    if refusal:
        row = layout.row()
        row.alert = True
        row.label(text=refusal, icon="ERROR")


# -------------------------------------------------------------------------------- preferences


def me_lines(me: dict[str, Any] | None) -> list[str]:
    """'Organisation: …', 'Plan: …', 'Role: …' from /v1/me."""
    if not me:
        return []
    org = me.get("org") or {}
    member = me.get("member") or {}
    plan = str(org.get("plan", ""))
    plan_name = pricing.PLANS[plan].name if plan in pricing.PLANS else plan
    name, role = str(member.get("name", "?")), str(member.get("role", "?"))
    who = name if name.endswith(f"({role})") else f"{name} ({role})"
    return [f"Organisation: {org.get('name', '?')}", f"Plan: {plan_name}", f"Signed in as {who}"]


def draw_preferences(
    layout: Any, prefs: Any, state: State, key_source: str, key_hint: str, online_access: bool, url_in_use: str = ""
) -> None:
    """The add-on preferences. `key_source` says where the key in use comes from; never the key itself.

    `url_in_use` is the URL the sync uses, shown when ACT3_API_URL overrides the field.
    """
    col = layout.column()
    col.prop(prefs, "service_url")
    if url_in_use and url_in_use != prefs.service_url.strip():
        col.label(text=f"Using ACT3_API_URL: {url_in_use}", icon="INFO")
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
