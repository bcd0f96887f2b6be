"""The balance at the right end of Blender's top bar (appended to TOPBAR_HT_upper_bar)."""

from __future__ import annotations

from typing import Any, cast

import bpy

from . import layouts, prefs, redraw, session


def draw_topbar(self, context) -> None:
    # The top bar has two header regions and an appended function runs in both: draw on the right only.
    region = context.region
    if region is None or region.alignment != "RIGHT":
        return
    window = context.window
    if window is not None:
        redraw.remember_topbar(window, region)
    layouts.draw_header(self.layout, session.state(), prefs.THRESHOLDS)


def register() -> None:
    bpy.types.TOPBAR_HT_upper_bar.append(cast(Any, draw_topbar))


def unregister() -> None:
    bpy.types.TOPBAR_HT_upper_bar.remove(cast(Any, draw_topbar))
    redraw.forget_topbars()
