"""The extension zip carries bytecode Blender's Python loads at the first enable after an install.

Python uses a `__pycache__/<module>.cpython-311.pyc` when its header says "hash-based, check the
source" and its hash is the source's own: then the first enable loads instead of compiling (about
90 ms of the 135 ms it took; scripts/bench_addon.py), and a source edited after the install still
wins, since its hash no longer matches.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import PurePosixPath

from tests.support import blender

CHECKED_HASH = 0b11  # PEP 552: bit 0 hash-based, bit 1 check_source


def bytecode_of(source: str) -> str:
    """Where Python looks for a module's bytecode, inside the zip."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc").removeprefix("./")


def test_every_module_in_the_zip_has_checked_hash_bytecode_of_its_own_source():
    assert sys.version_info[:2] == (3, 11)  # the Python of Blender 4.2 to 5.0, and of the bpy module
    with zipfile.ZipFile(blender.built_zip()) as zf:
        names = set(zf.namelist())
        sources = sorted(n for n in names if n.endswith(".py"))
        assert "__init__.py" in sources and "core/pricing.py" in sources and len(sources) > 30
        for name in sources:
            assert bytecode_of(name) in names, f"{name} has no bytecode in the zip"
            header = zf.read(bytecode_of(name))[:16]
            assert header[:4] == importlib.util.MAGIC_NUMBER, name
            assert int.from_bytes(header[4:8], "little") == CHECKED_HASH, name
            assert header[8:16] == importlib.util.source_hash(zf.read(name)), f"{name}: bytecode of another source"
        # Nothing but the add-on's own bytecode: no stray caches of the repository's tests or tools.
        assert {n for n in names if n.endswith(".pyc")} == {bytecode_of(n) for n in sources}
