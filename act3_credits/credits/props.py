"""Window-manager properties: the history list's rows and filters (never saved into a .blend).

A UIList needs a collection property, so `mirror_history` copies the state's loaded rows into
`WindowManager.act3.history_rows`; the timer calls it after a drain, never a draw.
"""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import CollectionProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from .. import session
from ..core.state import History
from ..core.vocabulary import NAME_MAX_CHARS
from . import draw

_filter_guard = False


def request_history(tier: str, shot: str) -> None:
    """Ask the service for the first page of this filter (queued for the worker, no network here)."""
    session.request("history", tier=tier, shot=shot)


def _on_filter(self, context) -> None:
    if _filter_guard:
        return
    shot = self.history_shot.strip()
    if len(shot) > NAME_MAX_CHARS:
        # No shot name is longer, so nothing longer can match; the field says what is searched.
        # (Not StringProperty's maxlen: it counts bytes, and cuts a character in two.)
        shot = shot[:NAME_MAX_CHARS]
        set_filter(self, filter_tier(self), shot)
    request_history(filter_tier(self), shot)


def filter_tier(ui: Any) -> str:
    return "" if ui.history_tier == "ALL" else ui.history_tier


def set_filter(ui: Any, tier: str, shot: str) -> None:
    """Show a filter in the panel's fields without asking the service once per field."""
    global _filter_guard
    _filter_guard = True
    try:
        ui.history_tier = tier or "ALL"
        ui.history_shot = shot
    finally:
        _filter_guard = False


class ACT3_PG_history_row(bpy.types.PropertyGroup):
    row_id: IntProperty()  # type: ignore[valid-type]
    date: StringProperty()  # type: ignore[valid-type]
    shot: StringProperty()  # type: ignore[valid-type]
    tier: StringProperty()  # type: ignore[valid-type]
    cost: StringProperty()  # type: ignore[valid-type]
    credits: IntProperty()  # type: ignore[valid-type]
    tooltip: StringProperty()  # type: ignore[valid-type]


def _redraw_token_set(self, context) -> None:
    """Nothing to do: having an update callback is what makes setting it redraw every window."""


class ACT3_PG_ui(bpy.types.PropertyGroup):
    # Setting a Python property that has an update callback sends Blender's NC_WINDOW notifier, which
    # redraws every region of every window, the top bar (a global area) included: see redraw.whole_ui.
    redraw_token: IntProperty(options={"HIDDEN", "SKIP_SAVE"}, update=_redraw_token_set)  # type: ignore[valid-type]
    history_rows: CollectionProperty(type=ACT3_PG_history_row)  # type: ignore[valid-type]
    history_index: IntProperty(default=-1)  # type: ignore[valid-type]
    history_tier: EnumProperty(  # type: ignore[valid-type]
        name="Tier",
        description="Show only this quality tier (filtered by the service)",
        items=draw.TIER_FILTER_ITEMS,
        default="ALL",
        update=_on_filter,
    )
    history_shot: StringProperty(  # type: ignore[valid-type]
        name="Shot",
        description="Show only shots whose name contains this (filtered by the service)",
        update=_on_filter,
    )


# What the list shows now: (ids of the mirrored rows); compared so an unchanged history costs nothing.
_mirrored: list[int] = []


def mirror_history(ui: Any, history: History, force: bool = False) -> bool:
    """Make `ui.history_rows` show `history.rows`; True when it changed. Appends when only more rows came."""
    global _mirrored
    ids = [row.id for row in history.rows]
    if not force and ids == _mirrored and len(ui.history_rows) == len(ids):
        return False
    rows = ui.history_rows
    start = len(_mirrored)
    if force or len(rows) != start or ids[:start] != _mirrored:
        rows.clear()
        start = 0
    card = session.state().rate_card
    costs = draw.shot_tier_costs(history.rows)
    # A render's tooltip compares it with the same shot's other tiers ("Was High worth it?"), so rows
    # already shown are brought up to date when more rows come.
    for item, row in zip(rows, history.rows[:start], strict=False):
        tooltip = draw.history_cells(row, card, costs).tooltip
        if item.tooltip != tooltip:
            item.tooltip = tooltip
    for row in history.rows[start:]:
        cells = draw.history_cells(row, card, costs)
        item = rows.add()
        item.row_id = row.id
        item.date = cells.date
        item.shot = cells.shot
        item.tier = cells.tier
        item.cost = cells.cost
        item.credits = row.credits
        item.tooltip = cells.tooltip
    _mirrored = ids
    if ui.history_index >= len(rows):
        ui.history_index = len(rows) - 1
    return True


def forget_mirror() -> None:
    global _mirrored
    _mirrored = []


classes = (ACT3_PG_history_row, ACT3_PG_ui)


def register_properties() -> None:
    bpy.types.WindowManager.act3 = PointerProperty(type=ACT3_PG_ui)  # type: ignore[attr-defined]
    forget_mirror()


def unregister_properties() -> None:
    del bpy.types.WindowManager.act3  # type: ignore[attr-defined]
    forget_mirror()
