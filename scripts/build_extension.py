"""Build dist/act3_credits-VERSION.zip with Blender's own extension tool, then validate it.

Blender's `blender_ext.py` (inside the bpy wheel) runs under plain Python. The manifest lives at the
repository root, the add-on in `act3_credits/`, so the two are staged together in a temporary
folder and built from there: the zip holds the add-on and nothing else of the repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def blender_ext_tool() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the bpy module is needed for Blender's extension tool (run ./scripts/test or ./scripts/demo once)")
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"error: blender_ext.py not found in the bpy module at {bpy_dir}")
    return found[-1]


def build(output_dir: Path) -> Path:
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = blender_ext_tool()
    with tempfile.TemporaryDirectory(prefix="act3-build-") as tmp:
        stage = Path(tmp) / manifest["id"]
        shutil.copytree(ROOT / "act3_credits", stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy2(ROOT / "blender_manifest.toml", stage / "blender_manifest.toml")
        if zip_path.exists():
            zip_path.unlink()
        run = [sys.executable, str(tool), "build", "--source-dir", str(stage), "--output-filepath", str(zip_path)]
        result = subprocess.run(run, capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"error: building the extension failed:\n{result.stdout}{result.stderr}")
    result = subprocess.run([sys.executable, str(tool), "validate", str(zip_path)], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"error: Blender rejected the built extension:\n{result.stdout}{result.stderr}")
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    print(build(args.output_dir))


if __name__ == "__main__":
    main()
