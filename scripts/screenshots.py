"""Make the README's screenshots in a real Blender window (../shared/tools/blender-gui must be set up).

    .venv/bin/python scripts/screenshots.py [--out gui-out] [--scale 1.0] [--size 1600x900]

Starts act3-server on a fresh SQLite database (as the demo does), builds the extension zip, and
runs scripts/gui/in_blender.py inside Blender with the service's URL and an owner's key.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import build_extension  # noqa: E402
import demo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gui-out")
    ap.add_argument("--scale", default="1.0")
    ap.add_argument("--size", default="1600x900")
    ap.add_argument("--views", default="panel")
    ap.add_argument("--plan", default="pro")
    ap.add_argument("--tool", default=str(ROOT.parent / "shared" / "tools" / "blender-gui"))
    args = ap.parse_args()
    build_extension.build(ROOT / "dist")
    with tempfile.TemporaryDirectory(prefix="act3-gui-") as tmp:
        proc, url, orgs = demo.start_service(Path(tmp), render_speed=20.0)
        try:
            key = next(o for o in orgs["orgs"] if o["plan"] == args.plan)["keys"]["owner"]
            env = dict(os.environ, ACT3_API_URL=url, ACT3_API_KEY=key, ACT3_GUI_SCALE=args.scale,
                       ACT3_GUI_VIEWS=args.views, ACT3_GUI_PREFIX=f"{args.size}-{args.scale}-")
            subprocess.run([args.tool, "run", str(ROOT / "scripts" / "gui" / "in_blender.py"), "--project", str(ROOT),
                            "--out", args.out, "--size", args.size, "--timeout", "120"], env=env, check=False)
        finally:
            proc.terminate()


if __name__ == "__main__":
    main()
