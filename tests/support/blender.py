"""Install the built extension into the headless Blender module, as Blender itself would.

Plain Python (stdlib + bpy, no pytest): the bpy 4.2 minimum-version check imports it too.
bpy is one Blender per process, so everything here is process-wide.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REPO_MODULE = "act3test"
PACKAGE = f"bl_ext.{REPO_MODULE}.act3_credits"


def _throwaway(prefix: str) -> str:
    """A temporary folder that goes when this process ends (each test process makes a few)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def import_bpy() -> types.ModuleType:
    """bpy with its user folders in a throwaway directory, so tests never touch real preferences."""
    if "bpy" not in sys.modules:
        os.environ.setdefault("BLENDER_USER_RESOURCES", _throwaway("act3-blender-user-"))
    import bpy

    return bpy


@functools.lru_cache(maxsize=1)
def built_zip() -> Path:
    """The extension zip, built and validated by scripts/build_extension once per process."""
    spec = importlib.util.spec_from_file_location("act3_build_extension", ROOT / "scripts" / "build_extension.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build(Path(_throwaway("act3-dist-"))))


def install_extension(zip_path: Path | None = None, online: bool = True) -> types.ModuleType:
    """Create a user repository on a fresh folder, install the zip into it and enable it.

    Returns the enabled package module (`bl_ext.act3test.act3_credits`).
    """
    bpy = import_bpy()
    zip_path = zip_path or built_zip()
    prefs = bpy.context.preferences
    prefs.system.use_online_access = online
    repos = prefs.extensions.repos
    if REPO_MODULE not in {r.module for r in repos}:
        repos.new(
            name=REPO_MODULE,
            module=REPO_MODULE,
            custom_directory=_throwaway("act3-extensions-"),
            source="USER",
        )
    result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo=REPO_MODULE, enable_on_install=True)
    if "FINISHED" not in result:
        raise RuntimeError(f"installing {zip_path.name} failed: {result}")
    return sys.modules[PACKAGE]


def _raise(exc: BaseException) -> None:
    # addon_utils prints errors by default; a test must see them fail.
    raise exc


def disable_extension() -> None:
    import addon_utils

    addon_utils.disable(PACKAGE, default_set=True, handle_error=_raise)


def enable_extension() -> types.ModuleType:
    import addon_utils

    addon_utils.enable(PACKAGE, default_set=True, handle_error=_raise)
    return sys.modules[PACKAGE]


class EnabledAddon:
    """The enabled extension as a test drives it: its modules, its state, the artist's preferences,
    and `until`, which runs the add-on's timer beat as Blender's event loop would (headless Blender
    fires no timers)."""

    def __init__(self, package: types.ModuleType) -> None:
        self.package = package

    def module(self, name: str) -> types.ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    @property
    def state(self) -> Any:
        return self.module("runtime").state()

    @property
    def worker(self) -> Any:
        return self.module("runtime").worker()

    @property
    def prefs(self) -> Any:
        return import_bpy().context.preferences.addons[PACKAGE].preferences

    def connect(self, server: Any, plan: str = "pro", role: str = "owner") -> str:
        """What an artist does in the preferences: the service URL, then paste the key."""
        key = server.key(plan, role)
        self.prefs.service_url = server.url
        self.prefs.api_key = key
        return key

    def until(self, predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        """Run the add-on's timer until `predicate()` is true; returns its value."""
        timers = self.module("timers")
        deadline = time.monotonic() + timeout
        while True:
            timers.tick()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                s = self.state
                raise AssertionError(
                    f"{what} did not happen in {timeout} s: {s.connection}, {s.last_error}, {s.last_message}"
                )
            time.sleep(0.01)
