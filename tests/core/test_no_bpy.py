"""The core, `api`, the shared widgets and both features' draw functions import in a Python without Blender.

The test environment has the `bpy` module installed, so an `import bpy` added to the core would pass
every other test. Here a fresh interpreter refuses Blender's modules on import (a meta-path finder put
first), imports every core module (found by walking the package, so a new module is covered too),
`act3_credits.api`, `act3_credits.widgets`, `act3_credits.credits.draw` and `act3_credits.generate.draw`, and reports what failed.
A second check reads the same files: no `import bpy` (or blf, gpu, ...) at any level, not even inside
a function, where an import test cannot see it.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import act3_credits.core

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "act3_credits"

# Every module Blender provides that an add-on could import.
BLENDER_MODULES = (
    "bpy",
    "bpy_extras",
    "bpy_types",
    "_bpy",
    "blf",
    "gpu",
    "gpu_extras",
    "bgl",
    "bmesh",
    "mathutils",
    "idprop",
    "aud",
    "freestyle",
    "imbuf",
    "bl_math",
    "bl_ui",
    "bl_operators",
)

CORE = sorted(f"act3_credits.core.{m.name}" for m in pkgutil.iter_modules(act3_credits.core.__path__))
WITHOUT_BLENDER = ["act3_credits.core", *CORE, "act3_credits.api", "act3_credits.widgets", "act3_credits.credits.draw", "act3_credits.generate.draw"]

PROBE = """
import importlib, importlib.abc, json, sys

REFUSED = set({refused!r})

class NoBlender(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (refused: no Blender here)", name=name)
        return None

sys.meta_path.insert(0, NoBlender())
for name in REFUSED:
    sys.modules.pop(name, None)

try:
    import bpy  # noqa: F401
    guard = "bpy imported"
except ImportError:
    guard = "refused"

failed = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{{type(exc).__name__}}: {{exc}}"
blender = sorted(m for m in sys.modules if m.split(".")[0] in REFUSED)
print(json.dumps({{"guard": guard, "failed": failed, "blender": blender}}))
"""


def _import_without_blender(modules: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(refused=BLENDER_MODULES, modules=modules)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_api_widgets_and_draw_import_in_a_python_that_refuses_bpy():
    # The walk found the core (a renamed package would otherwise check nothing).
    assert "act3_credits.core.pricing" in CORE and "act3_credits.core.sync" in CORE
    seen = _import_without_blender(WITHOUT_BLENDER)
    assert seen["guard"] == "refused"  # the probe really has no bpy
    assert seen["failed"] == {}
    assert seen["blender"] == []


def test_the_probe_sees_a_module_that_needs_bpy():
    # The shell's session imports bpy: the same probe must report it, or the test above proves nothing.
    seen = _import_without_blender(["act3_credits.session"])
    assert seen["guard"] == "refused"
    assert list(seen["failed"]) == ["act3_credits.session"]
    assert "bpy" in seen["failed"]["act3_credits.session"]


def _blender_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in BLENDER_MODULES]
    return found


def test_no_blender_import_at_any_level_in_the_core_api_widgets_or_draw():
    files = sorted((PACKAGE / "core").rglob("*.py"))
    files += [PACKAGE / "api.py", PACKAGE / "widgets.py", PACKAGE / "credits" / "draw.py", PACKAGE / "generate" / "draw.py"]
    assert len(files) >= len(CORE) + 3
    assert [hit for f in files for hit in _blender_imports(f)] == []
