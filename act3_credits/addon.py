"""register()/unregister() of the Blender shell: the preferences, the two features, the timer, handlers.

The features are folders of one shape (`credits/`, `generate/`: draw, props, ops, ui), each with its
own register/unregister. Nothing here touches the network: `session.start()` starts the core's worker
thread, which syncs in the background; the cached balance shows (marked stale) until it answers.
"""

from __future__ import annotations

import bpy

from . import credits, generate, prefs, redraw, session, timers


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # The windows' regions may be freed by the load: never tag a remembered one again.
    redraw.forget_topbars()


@bpy.app.handlers.persistent
def _on_load_post(*_args) -> None:
    from .credits import props

    redraw.forget_topbars()
    props.forget_mirror()  # the window manager may be a new one: fill its list again
    timers.tick()


def register() -> None:
    for cls in prefs.classes:
        bpy.utils.register_class(cls)
    credits.register()
    generate.register()
    prefs.load_thresholds()
    session.start()
    bpy.app.handlers.load_pre.append(_on_load_pre)
    bpy.app.handlers.load_post.append(_on_load_post)
    timers.start()


def unregister() -> None:
    timers.stop()
    for handlers, fn in ((bpy.app.handlers.load_post, _on_load_post), (bpy.app.handlers.load_pre, _on_load_pre)):
        if fn in handlers:
            handlers.remove(fn)
    session.stop()
    generate.unregister()
    credits.unregister()
    for cls in reversed(prefs.classes):
        bpy.utils.unregister_class(cls)
