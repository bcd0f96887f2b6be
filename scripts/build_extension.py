"""Build dist/act3_credits-VERSION.zip with Blender's own extension tool, then validate it.

Blender's `blender_ext.py` (inside the bpy wheel) runs under plain Python. The manifest lives at the
repository root, the add-on in `act3_credits/`, so the two are staged together in a temporary
folder and built from there: the zip holds the add-on and nothing else of the repository.

The zip also carries the add-on's bytecode for Blender's Python (3.11 in Blender 4.2 to 5.0), so the
first enable after an install loads it instead of compiling about 400 kB of sources (the enable is
timed by scripts/bench_addon.py). The bytecode is checked-hash: Python compares it with the source's
hash at each import, not with file times (an install does not keep them), so a source edited after
the install is compiled again as usual. Another Python (another tag) ignores it and compiles.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import py_compile
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
        sys.exit(
            "error: the bpy module is needed for Blender's extension tool (run ./scripts/test or ./scripts/demo once)"
        )
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"error: blender_ext.py not found in the bpy module at {bpy_dir}")
    return found[-1]


BLENDER_PYTHON = (3, 11)  # Blender 4.2 LTS to 5.0; this tool runs on it too (the bpy module needs it)
# The manifest at the root keeps any bytecode out of a build made from the repository's root; the staged
# copy lets through the bytecode made here for the staged sources.
BYTECODE_PATTERNS = ('  "__pycache__/",\n', '  "*.pyc",\n')


def stage_manifest(text: str, with_bytecode: bool) -> str:
    if not with_bytecode:
        return text
    for line in BYTECODE_PATTERNS:
        if line not in text:
            raise SystemExit(
                f"error: blender_manifest.toml no longer excludes {line.strip()!r}; update build_extension.py"
            )
        text = text.replace(line, "", 1)
    return text


def compile_bytecode(stage: Path) -> bool:
    """Checked-hash bytecode of every module next to it, if this is Blender's Python; False if not."""
    if sys.version_info[:2] != BLENDER_PYTHON:
        print(
            f"note: Python {sys.version_info[0]}.{sys.version_info[1]} is not Blender's, so the zip has no bytecode",
            file=sys.stderr,
        )
        return False
    ok = compileall.compile_dir(
        str(stage), quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH, workers=1
    )
    if not ok:
        raise SystemExit("error: compiling the add-on's sources failed")
    return True


def build(output_dir: Path) -> Path:
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    output_dir.mkdir(parents=True, exist_ok=True)
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tool = blender_ext_tool()
    with tempfile.TemporaryDirectory(prefix="act3-build-") as tmp:
        stage = Path(tmp) / manifest["id"]
        shutil.copytree(ROOT / "act3_credits", stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with_bytecode = compile_bytecode(stage)
        manifest_text = (ROOT / "blender_manifest.toml").read_text()
        (stage / "blender_manifest.toml").write_text(stage_manifest(manifest_text, with_bytecode))
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
