"""The Shots and Render Queue sub-panels (3D View sidebar, ACT3 tab) and the Shots list."""

from __future__ import annotations

from typing import Any

import bpy

from .. import session
from ..core import shots
from ..widgets import CATEGORY, CREDITS_PANEL, region_width
from . import draw, intercept, jobs, ops, props
from .ops import account


class ACT3_UL_shots(bpy.types.UIList):
    """Shots with their tier, engine, snapped duration and estimated credits; filtered by tag."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        card = props.rate_card()
        est = shots.estimate([props.to_shot(data, item)], card, account())
        draw.draw_shot_row(layout, item, est.lines[0], card, region_width(context))

    def filter_items(self, context, data, propname):
        items = getattr(data, propname)
        tag = props.settings(context).tag_filter
        needle = (self.filter_name or "").lower()
        flags = []
        for it in items:
            shown = shots.matches_tag(it.tags, tag) and (not needle or needle in it.name.lower())
            flags.append(self.bitflag_filter_item if shown else 0)
        if self.use_filter_invert:
            flags = [0 if f else self.bitflag_filter_item for f in flags]
        return flags, []


class _SidebarPanel(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY


class ACT3_PT_shots(_SidebarPanel):
    bl_idname = "ACT3_PT_shots"
    bl_label = "Shots"

    def draw(self, context):
        scene = context.scene
        settings = props.settings(context)
        card = props.rate_card()
        est = shots.estimate(props.tagged_shots(scene, settings.tag_filter), card, account())
        active = None
        if 0 <= scene.act3_shots_index < len(scene.act3_shots):
            item = scene.act3_shots[scene.act3_shots_index]
            active = shots.estimate([props.to_shot(scene, item)], card, account()).lines[0]
        draw.draw_shots_panel(
            self.layout, scene, settings, est, active, region_width(context), props.project_for(scene), card
        )


class ACT3_PT_render_queue(_SidebarPanel):
    bl_idname = "ACT3_PT_render_queue"
    bl_label = "Render Queue"
    bl_ui_units_x = 26  # as a popover (wm.call_panel): room for shot, tier and status

    def draw_header_preset(self, context):
        layout = self.layout
        assert layout is not None
        layout.operator("act3.jobs_refresh", text="", icon="FILE_REFRESH", emboss=False)

    def draw(self, context):
        draw.draw_render_queue(
            self.layout,
            session.state(),
            props.rate_card(),
            jobs.guard.reasons,
            ops.expanded_jobs,
            region_width(context),
        )


class ACT3_PT_generate_settings(_SidebarPanel):
    bl_idname = "ACT3_PT_generate_settings"
    bl_label = "Budget Guard"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw.draw_generate_settings(self.layout, props.settings(context), intercept.problems(), region_width(context))


classes: tuple[Any, ...] = (ACT3_UL_shots, ACT3_PT_shots, ACT3_PT_render_queue, ACT3_PT_generate_settings)


def attach_to_shell() -> None:
    """Nest the panels under the shell's ACT3 Credits panel when it is there (set before registering)."""
    parent = CREDITS_PANEL if hasattr(bpy.types, CREDITS_PANEL) else ""
    for cls in (ACT3_PT_shots, ACT3_PT_render_queue):
        if parent:
            cls.bl_parent_id = parent
        elif "bl_parent_id" in cls.__dict__:
            del cls.bl_parent_id
    ACT3_PT_generate_settings.bl_parent_id = ACT3_PT_render_queue.bl_idname
