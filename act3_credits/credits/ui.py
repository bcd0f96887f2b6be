"""Credits on screen: the balance at the right end of the top bar, the Credits Detail panel and its
Transaction History sub-panel (3D View sidebar, ACT3 tab)."""

from __future__ import annotations

from typing import Any, cast

import bpy

from .. import prefs, redraw, session
from ..core import limits
from ..widgets import CATEGORY, CREDITS_PANEL, PANEL_MARGINS, region_width
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
            self.layout,
            session.state(),
            prefs.THRESHOLDS,
            bool(bpy.app.online_access),
            region_width(context),
            project=limits.project_name(getattr(context.scene, "act3_project", ""), bpy.data.filepath),
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


# ----------------------------------------------------------------------------------- spend chart

# The chart and the legend's swatches are previews (bpy.utils.previews): pixels made here, shown by
# `template_icon` and `icon_value` (chart.py says why not the gpu module). Made again only when the
# spend, the allocation, the width or the UI scale changes; a new name each time, so Blender uploads
# the new pixels instead of showing the old texture.
_previews: Any = None
_chart: tuple[Any, draw.ChartIcon] | None = None  # (what it was drawn from, the picture)
_names = iter(range(1, 1 << 62))


def _swatch(name: str, pixels: list[float], size: int) -> int:
    item = _previews.get(name) or _previews.new(name)
    item.icon_size = (size, size)
    item.icon_pixels_float = pixels
    item.image_size = (size, size)
    item.image_pixels_float = pixels
    return item.icon_id


def _legend() -> tuple[tuple[str, int], ...]:
    """Small squares in the chart's colours: each tier, the allocation line and the forecast's dashes."""
    from . import chart

    size, out = 32, []
    for name, colour in [*chart.TIER_COLOURS.items(), ("allocation", chart.ALLOCATION_COLOUR)]:
        canvas = chart.Canvas(size, size)
        if name == "allocation":
            canvas.rect(4, 14, 28, 18, colour)
        else:
            canvas.rect(6, 6, 26, 26, colour)
        out.append((name, _swatch(f"swatch-{name}", canvas.bottom_up(), size)))
    canvas = chart.Canvas(size, size)
    for x in (4, 14, 24):
        canvas.rect(x, 14, x + 5, 18, chart.FORECAST_COLOUR)
    out.append(("forecast", _swatch("swatch-forecast", canvas.bottom_up(), size)))
    return tuple(out)


def chart_picture(state: Any, width: float, ui_scale: float, pixel_size: int = 1) -> draw.ChartIcon | None:
    """The chart for the cached spend, `width` px wide at UI scale 1 (None before the first answer)."""
    global _chart
    from . import chart

    series = draw.series(state)
    if series is None or _previews is None:
        return None
    icon_scale, w, h = chart.size_for(width, ui_scale, pixel_size)
    key = (series, w, h, ui_scale)
    if _chart is not None and _chart[0] == key:
        return _chart[1]
    canvas, _geometry = chart.render(series, w, h, ui_scale)
    item = _previews.new(f"chart-{next(_names)}")
    item.image_size = (w, h)
    item.image_pixels_float = canvas.bottom_up()
    if _chart is not None:
        old = next((k for k, v in _previews.items() if v.icon_id == _chart[1].icon_id), None)
        if old is not None:
            del _previews[old]
    legend = _chart[1].icons if _chart is not None else _legend()
    _chart = (key, draw.ChartIcon(item.icon_id, icon_scale, legend))
    return _chart[1]


def chart_preview(picture: draw.ChartIcon) -> Any:
    """The preview behind a picture (its `image_size`, `image_pixels_float`), for tests and scripts."""
    return next(v for v in _previews.values() if v.icon_id == picture.icon_id)


def open_previews() -> None:
    global _previews, _chart
    import bpy.utils.previews

    _previews = bpy.utils.previews.new()
    _chart = None


def close_previews() -> None:
    global _previews, _chart
    import bpy.utils.previews

    if _previews is not None:
        bpy.utils.previews.remove(_previews)
    _previews, _chart = None, None


def _shot_names(context: Any) -> list[str]:
    scene = getattr(context, "scene", None)
    return [s.name for s in getattr(scene, "act3_shots", ())] if scene is not None else []


class ACT3_PT_spend(bpy.types.Panel):
    bl_idname = "ACT3_PT_spend"
    bl_label = "Spend"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_parent_id = CREDITS_PANEL

    def draw(self, context):
        state = session.state()
        system = context.preferences.system
        # Headless Blender reports a UI scale of 0: draw as at 1.
        picture = chart_picture(
            state, region_width(context) - PANEL_MARGINS, system.ui_scale or 1.0, int(system.pixel_size or 1)
        )
        draw.draw_spend(self.layout, state, picture, _shot_names(context), region_width(context))


class ACT3_UL_history(bpy.types.UIList):
    """Newest first, as the service sent them; filtering happens on the service, so no local filter bar."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        draw.draw_history_item(layout, item.date, item.shot, item.tier, item.cost, region_width(context))

    def draw_filter(self, context, layout):
        pass


classes = (ACT3_UL_history, ACT3_PT_credits, ACT3_PT_spend, ACT3_PT_history)
