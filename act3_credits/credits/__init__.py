"""CREDITS: the balance in the top bar, Credits Detail with its history, the Buy dialog, the CSV export.

Same shape as `generate/`: `draw` (plain functions of a layout, no bpy), `props`, `ops`, `ui`, and
`register()`/`unregister()` called by the shell's `addon.py`. Nothing here imports bpy at module level.
"""

from __future__ import annotations

from typing import Any

classes: tuple[Any, ...] = ()


def register() -> None:
    global classes
    import bpy

    from . import ops, props, ui

    classes = (*props.classes, *ops.classes, *ui.classes)
    for cls in classes:
        bpy.utils.register_class(cls)
    props.register_properties()
    ui.attach_header()


def unregister() -> None:
    global classes
    import bpy

    from . import props, ui

    ui.detach_header()
    props.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    classes = ()
