"""What both features' drawing shares (no bpy): the sidebar tab, the width rule, a figure row, names.

The credits UI (`credits/draw.py`) and GENERATE (`generate/draw.py`) take their widths, their tier and
engine names and their right-aligned figures from here, so the two read alike at every width.
"""

from __future__ import annotations

import textwrap
from typing import Any

from .core import pricing

CATEGORY = "ACT3"  # the 3D View sidebar tab
CREDITS_PANEL = "ACT3_PT_credits"  # the Credits Detail panel: the top bar opens it, the others nest in it


# --------------------------------------------------------------------------------- widths

# The 3D View sidebar opens about 280 px wide at UI scale 1 (seen in Blender 4.3 at 1600×900 and
# 1920×1080); its tabs and a panel's margins take about 50 px of that. Below `WIDE_REGION` a list
# shows its essential columns only (name, tier, credits); an artist who widens the sidebar gets more.
DEFAULT_SIDEBAR = 280
WIDE_REGION = 400
# What a panel, and a list inside one, leave of the region's width (px at UI scale 1, as
# tests/addon/test_readable.py measures them): the sidebar's tabs and a panel's margins; and a list's
# frame and scroll bar as well.
PANEL_MARGINS = 52
LIST_MARGINS = 70


def region_width(context: Any) -> float:
    """The region's width in pixels at UI scale 1 (what Blender draws is this times the scale)."""
    region = getattr(context, "region", None)
    if region is None:
        return float(DEFAULT_SIDEBAR)
    prefs = getattr(context, "preferences", None)
    scale = prefs.system.ui_scale if prefs is not None else 1.0
    return region.width / max(scale or 1.0, 0.1)


def is_wide(width: float) -> bool:
    return width >= WIDE_REGION


def figure_row(
    layout: Any, label: str, value: str, icon: str = "NONE", factor: float = 0.5, icon_value: int = 0
) -> Any:
    """'Label ...... 12,480 cr': the figure right-aligned in its own half, so a name never cuts it.

    `icon_value`: a custom icon (a preview's id, e.g. a chart colour's swatch) instead of `icon`."""
    split = layout.split(factor=factor)
    if icon_value:
        split.label(text=label, icon_value=icon_value)
    else:
        split.label(text=label, icon=icon)
    right = split.row()
    right.alignment = "RIGHT"
    right.label(text=value)
    return split


def tier_name(tier_id: str, card: pricing.RateCard | None = None) -> str:
    """'High' for 'high' (from the rate card in use when given); an unknown tier reads as its id."""
    try:
        return (card or pricing.DEFAULT_RATE_CARD).tier(tier_id).name
    except pricing.PricingError:
        return tier_id or "?"


def engine_name(engine_id: str, card: pricing.RateCard | None = None) -> str:
    """'Grok Imagine' for 'grok-imagine'; an engine the card does not know reads as its id."""
    try:
        return (card or pricing.DEFAULT_RATE_CARD).engine(engine_id).name
    except pricing.PricingError:
        return engine_id or "?"


def wrapped_label(layout: Any, text: str, icon: str = "NONE", width: int = 60) -> None:
    """A long line as several labels (Blender cuts a label's middle out instead of wrapping it)."""
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width=max(12, width)) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")
