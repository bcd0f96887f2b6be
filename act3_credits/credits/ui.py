"""Credits on screen: the balance at the right end of the top bar, the Credits Detail panel and its
Transaction History sub-panel (3D View sidebar, ACT3 tab)."""

from __future__ import annotations

from typing import Any, cast

import bpy

from .. import prefs, redraw, session
from ..widgets import CATEGORY, CREDITS_PANEL, region_width
from . import draw


def draw_topbar(self, context) -> None:
    # The top bar has two header regions and an appended function runs in both: draw on the right only.
    region = context.region
    if region is None or region.alignment != "RIGHT":
        return
    window = context.window
    if window is not None:
        redraw.remember_topbar(window, region)
    draw.draw_header(self.layout, session.state(), prefs.THRESHOLDS)


def attach_header() -> None:
    bpy.types.TOPBAR_HT_upper_bar.append(cast(Any, draw_topbar))


def detach_header() -> None:
    bpy.types.TOPBAR_HT_upper_bar.remove(cast(Any, draw_topbar))
    redraw.forget_topbars()


class ACT3_PT_credits(bpy.types.Panel):
    bl_idname = CREDITS_PANEL
    bl_label = "ACT3 Credits"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    def draw(self, context):
        draw.draw_credits(
            self.layout, session.state(), prefs.THRESHOLDS, bool(bpy.app.online_access), region_width(context)
        )


class ACT3_PT_history(bpy.types.Panel):
    bl_idname = "ACT3_PT_history"
    bl_label = "Transaction History"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_parent_id = CREDITS_PANEL

    def draw(self, context):
        ui = getattr(context.window_manager, "act3", None)
        if ui is None:
            return
        draw.draw_history(self.layout, session.state(), ui, bool(bpy.app.online_access))


class ACT3_UL_history(bpy.types.UIList):
    """Newest first, as the service sent them; filtering happens on the service, so no local filter bar."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        draw.draw_history_item(layout, item.date, item.shot, item.tier, item.cost, region_width(context))

    def draw_filter(self, context, layout):
        pass


classes = (ACT3_UL_history, ACT3_PT_credits, ACT3_PT_history)
