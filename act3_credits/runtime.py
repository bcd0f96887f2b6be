"""The one ACT3 state and sync worker of this Blender process (no bpy here).

Not a door of its own: the Blender shell reaches it through `session` (which starts, configures
and stops it from the preferences), and `act3_credits.api` reads the same objects, so a script and
the panels see one balance.
"""

from __future__ import annotations

import os
import threading

from .core.cache import Cache
from .core.state import State
from .core.sync import Settings, SyncWorker

_lock = threading.Lock()
_worker: SyncWorker | None = None


def start(settings: Settings, cache_dir: str | os.PathLike[str] | None = None) -> SyncWorker:
    """Show the cached numbers (stale) at once, then sync in the background. Starting twice reconfigures."""
    global _worker
    with _lock:
        if _worker is not None and _worker.running:
            _worker.configure(settings)
            return _worker
        state = State()
        cache = Cache(cache_dir) if cache_dir is not None else None
        if cache is not None:
            snapshot = cache.load(settings.base_url)
            if snapshot is not None:
                snapshot.apply_to(state)
        _worker = SyncWorker(state, cache)
        _worker.configure(settings)
        _worker.start()
        return _worker


def configure(settings: Settings) -> None:
    """New URL, key or online-access setting: reconnect with them (no-op when unchanged)."""
    if _worker is not None:
        _worker.configure(settings)


def stop() -> None:
    """Returns within about half a second, even while the service hangs."""
    with _lock:
        if _worker is not None:
            _worker.stop()


def is_running() -> bool:
    return _worker is not None and _worker.running


def worker() -> SyncWorker:
    """The current worker (a stopped one after `stop()`, whose `drain()` does nothing)."""
    if _worker is None:
        raise RuntimeError("ACT3 Credits is not running: enable the add-on (or call act3_credits.runtime.start).")
    return _worker


def state() -> State:
    """What draw code reads; an empty State before the first start, so drawing never fails."""
    return _worker.state if _worker is not None else _EMPTY


_EMPTY = State()
