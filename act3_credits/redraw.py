"""Tag what shows ACT3 numbers for redraw: the top bar of every window and the ACT3 sidebars.

The top bar is a global area: it is not in `window.screen.areas`, so the only handle on it is the
region its own draw ran in. `remember_topbar` keeps that per window (by pointer, never beyond a
file load or the window's life, as a freed region must never be touched).
"""

from __future__ import annotations

from typing import Any

import bpy

_topbars: dict[int, Any] = {}  # window pointer -> the top bar's right region, as seen in its last draw


def remember_topbar(window: Any, region: Any) -> None:
    _topbars[window.as_pointer()] = region


def forget_topbars() -> None:
    _topbars.clear()


def topbars() -> int:
    return len(_topbars)


def _windows() -> list[Any]:
    wm = bpy.context.window_manager
    return list(wm.windows) if wm is not None else []


def topbar() -> None:
    live = {w.as_pointer() for w in _windows()}
    for pointer, region in list(_topbars.items()):
        if pointer not in live:
            del _topbars[pointer]  # the window closed: its regions are gone
            continue
        try:
            region.tag_redraw()
        except ReferenceError:
            del _topbars[pointer]


def sidebars() -> None:
    for window in _windows():
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type == "VIEW_3D":
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()
            elif area.type == "PREFERENCES":
                area.tag_redraw()


def whole_ui() -> None:
    """Redraw every region of every window, the top bars too, before any of them drew the balance.

    Nothing reachable from Python tags a global area, but setting a Python property that has an
    update callback sends NC_WINDOW, which redraws everything (once: afterwards `topbar()` tags just
    the remembered regions). Without it a balance added to a running Blender stays invisible until
    something else redraws the top bar.
    """
    wm = bpy.context.window_manager
    ui = getattr(wm, "act3", None) if wm is not None else None
    if wm is not None and ui is not None and wm.windows:
        ui.redraw_token = (ui.redraw_token + 1) % 1_000_000


def everything() -> None:
    if not _topbars:
        whole_ui()
    topbar()
    sidebars()
