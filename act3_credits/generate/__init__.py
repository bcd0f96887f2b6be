"""GENERATE: shots stored in the .blend, the Cost Estimate dialog, the render queue with live credits,
tagging, fit to budget, the budget guard and the interception of other add-ons' operators.

`register()`/`unregister()` are called by the shell's `addon.py`. Nothing here imports bpy at module
level, so `generate.draw` stays importable for tests without Blender.
"""

from __future__ import annotations

from typing import Any

INTERCEPT_EVERY_S = 2.0
RECENT_JOBS = 20  # the Render Queue lists the organisation's latest jobs, from any session or machine

_jobs_asked: object = None  # the worker already asked for the recent jobs

classes: tuple[Any, ...] = ()


def _tick() -> float:
    """Follow a restarted worker, and guard operators of add-ons enabled (or reloaded) after this one."""
    global _jobs_asked
    import bpy

    from .. import session
    from . import intercept, jobs, props

    try:
        worker = session.worker_or_none()
        jobs.guard.attach(worker)
        intercept.sync(props.settings(bpy.context).intercept_ops)
        if worker is not None:
            if worker is not _jobs_asked and worker.state.connection == "ok":
                _jobs_asked = worker
                worker.request("jobs", limit=RECENT_JOBS)
                worker.request("auto_top_up")
            _ask_budgets(worker)
    except Exception:  # a timer that raises is dropped by Blender
        from ..core.logs import log

        log.exception("ACT3: generate timer")
    return INTERCEPT_EVERY_S


def _ask_budgets(worker: Any) -> None:
    """Budgets and the member's cap move with every hold and charge: ask again when the balance did
    (at most once a tick), never from a draw()."""
    global _budgets_seen
    credits = worker.state.credits
    if credits is None or worker.state.connection != "ok":
        return
    seen = (id(worker), credits.held, credits.total)
    if seen != _budgets_seen:
        _budgets_seen = seen
        worker.request("budgets")
        worker.request("me")


_budgets_seen: object = None


def register() -> None:
    global classes, _jobs_asked
    import bpy

    from . import jobs, ops, props, ui

    ui.attach_to_shell()
    _jobs_asked = None
    classes = (*props.classes, *ops.classes, *ui.classes)
    for cls in classes:
        bpy.utils.register_class(cls)
    props.register_properties()
    jobs.guard.reset()
    jobs.guard.settings = ops.guard_settings
    jobs.guard.notify = lambda message: ops.notify(message, "WARNING")
    jobs.guard.announce = lambda message: ops.notify(message, "INFO")
    jobs.guard.on_shot_completed = ops.record_shot_cost
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=0.5, persistent=True)


def unregister() -> None:
    global classes
    import bpy

    from . import intercept, jobs, props

    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    intercept.release_all()
    jobs.guard.detach()
    props.unregister_properties()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    classes = ()
