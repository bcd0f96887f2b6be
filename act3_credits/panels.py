"""The Credits Detail panel and its Transaction History sub-panel (3D View sidebar, ACT3 tab)."""

from __future__ import annotations

import bpy

from . import layouts, prefs, session


class ACT3_PT_credits(bpy.types.Panel):
    bl_idname = layouts.CREDITS_PANEL
    bl_label = "ACT3 Credits"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = layouts.CATEGORY

    def draw(self, context):
        layouts.draw_credits(
            self.layout, session.state(), prefs.THRESHOLDS, bool(bpy.app.online_access), layouts.region_width(context)
        )


class ACT3_PT_history(bpy.types.Panel):
    bl_idname = "ACT3_PT_history"
    bl_label = "Transaction History"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = layouts.CATEGORY
    bl_parent_id = layouts.CREDITS_PANEL

    def draw(self, context):
        ui = getattr(context.window_manager, "act3", None)
        if ui is None:
            return
        layouts.draw_history(self.layout, session.state(), ui, bool(bpy.app.online_access))


class ACT3_UL_history(bpy.types.UIList):
    """Newest first, as the service sent them; filtering happens on the service, so no local filter bar."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        layouts.draw_history_item(layout, item.date, item.shot, item.tier, item.cost, layouts.region_width(context))

    def draw_filter(self, context, layout):
        pass


classes = (ACT3_UL_history, ACT3_PT_credits, ACT3_PT_history)
