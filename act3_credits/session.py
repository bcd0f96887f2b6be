"""The Blender shell's one door to the core: settings from the preferences, start/stop, requests, the state.

Every bpy module of the add-on (credits and GENERATE alike) goes through here; `runtime` holds the
process-wide worker behind it, which `act3_credits.api` shares.

Everything here is quick and local (no network): requests are queued for the core's worker thread,
and `drain()` applies its answers on the main thread.
"""

from __future__ import annotations

from typing import Any

import bpy

from . import runtime
from .core import keystore
from .core.client import mask_key
from .core.state import State
from .core.sync import Settings, SyncWorker, Ticket

PACKAGE = __package__ or "act3_credits"


def user_dir() -> str:
    """The extension's own user folder (kept across upgrades): the saved key and the balance cache."""
    return bpy.utils.extension_path_user(PACKAGE, create=True)


def preferences() -> Any | None:
    preferences = bpy.context.preferences
    addon = preferences.addons.get(PACKAGE) if preferences is not None else None
    return addon.preferences if addon is not None else None


# Where the key in use came from ("environment", "file" or "none") and its masked tail, as of the
# last settings(): the preferences draw reads this instead of the disk. Never the key itself.
_key_info = ("none", "")
_url_in_use = ""
# A pasted key that could not be stored in the user folder: used until Blender closes, never saved.
_session_key = ""


def use_key_for_this_session(key: str) -> None:
    global _session_key
    _session_key = key.strip()


def forget_session_key() -> None:
    global _session_key
    _session_key = ""


def key_source() -> tuple[str, str]:
    return _key_info


def url_in_use() -> str:
    return _url_in_use


def settings() -> Settings:
    global _key_info, _url_in_use
    prefs = preferences()
    url_pref = prefs.service_url if prefs is not None else ""
    url, key, source = keystore.resolve(url_pref, _session_key, user_dir())
    _key_info = (source, mask_key(key))
    _url_in_use = url
    return Settings(base_url=url, api_key=key, online_access=bool(bpy.app.online_access))


def start() -> None:
    runtime.start(settings(), user_dir())


def stop() -> None:
    runtime.stop()


def reconfigure() -> None:
    """New URL, key or online access: the worker reconnects (no HTTP here)."""
    if runtime.is_running():
        runtime.configure(settings())


def state() -> State:
    return runtime.state()


def drain() -> bool:
    if not runtime.is_running():
        return False
    return runtime.worker().drain()


NOT_RUNNING = "ACT3 Credits is not running: enable the add-on and set an API key."


def worker_or_none() -> SyncWorker | None:
    """The running worker, or None while the add-on is not syncing (disabled, stopped)."""
    return runtime.worker() if runtime.is_running() else None


def request(kind: str, callback: Any = None, **params: Any) -> Ticket:
    """Queue a request for the worker thread; its answer lands in the state on a later drain."""
    return runtime.worker().request(kind, callback=callback, **params)
