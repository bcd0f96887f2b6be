"""The main-thread heartbeat: drain the worker, mirror the history list, redraw only on change.

A persistent `bpy.app.timers` callback: every 0.1 s while things happen, backing off to 1 s when
quiet. It never raises (Blender drops a timer that raises) and never waits on the network.
"""

from __future__ import annotations

import bpy

from . import redraw, session
from .core.logs import log
from .credits import props

FAST_S = 0.1
SLOW_S = 1.0

_interval = FAST_S
_online: bool | None = None
_failed = False
_packs_asked = False
_first = True  # the first beat after register redraws everything, so the balance shows at once
_reported: object = None  # the last `state.last_message` shown in the status bar (compared by identity)


def tick() -> float:
    """One beat; returns the seconds until the next one. Tests call it directly (no timers headless)."""
    global _interval, _online, _failed, _first, _packs_asked
    try:
        online = bool(bpy.app.online_access)
        if online != _online:
            _online = online
            session.reconfigure()
        changed = session.drain()
        state = session.state()
        _report(state)
        if state.connection != "ok":
            _packs_asked = False
        elif not state.packs and not _packs_asked:
            # The Buy dialog cannot redraw itself when they arrive later: fetch them once connected.
            _packs_asked = True
            session.request("packs")
        wm = bpy.context.window_manager
        ui = getattr(wm, "act3", None) if wm is not None else None
        if ui is not None and props.mirror_history(ui, state.history):
            changed = True
        if changed or _first:
            redraw.everything()
            _first = False
        _failed = False
    except Exception:
        if not _failed:  # once, not ten times a second
            log.exception("ACT3: the sync timer failed; retrying")
        _failed = True
        return SLOW_S
    _interval = FAST_S if changed else min(SLOW_S, _interval * 1.5)
    return _interval


def _report(state) -> None:
    """Each new outcome once in Blender's status bar and Info log; panels keep their layout."""
    global _reported
    message = state.last_message
    if message is None or message is _reported:
        return
    _reported = message
    if bpy.app.background:
        return  # scripts read outcomes through act3_credits.api
    level = state.message_level if state.message_level in ("INFO", "WARNING") else "INFO"
    try:
        bpy.ops.act3.report(message=message, level=level)  # type: ignore[attr-defined]
    except Exception:  # no window to report in (e.g. while a file loads): the Info log misses one line
        log.debug("ACT3: could not report %r", message)


def start() -> None:
    global _online, _interval, _first
    _online = bool(bpy.app.online_access)
    _interval = FAST_S
    _first = True
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=FAST_S, persistent=True)


def stop() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
