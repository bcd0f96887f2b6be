"""Install the built extension into the headless Blender module, as Blender itself would.

Plain Python (stdlib + bpy, no pytest): the bpy 4.2 minimum-version check imports it too.
bpy is one Blender per process, so everything here is process-wide.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPO_MODULE = "act3test"
PACKAGE = f"bl_ext.{REPO_MODULE}.act3_credits"


def import_bpy() -> types.ModuleType:
    """bpy with its user folders in a throwaway directory, so tests never touch real preferences."""
    if "bpy" not in sys.modules:
        os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="act3-blender-user-"))
    import bpy

    return bpy


@functools.lru_cache(maxsize=1)
def built_zip() -> Path:
    """The extension zip, built and validated by scripts/build_extension once per process."""
    spec = importlib.util.spec_from_file_location("act3_build_extension", ROOT / "scripts" / "build_extension.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.build(Path(tempfile.mkdtemp(prefix="act3-dist-"))))


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
            custom_directory=tempfile.mkdtemp(prefix="act3-extensions-"),
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
