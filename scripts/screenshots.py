"""Make the README's screenshots in a real Blender window (the blender-gui tool must be set up).

    .venv/bin/python scripts/screenshots.py [--out gui-out] [--scale 1.0] [--size 1600x900]

Starts act3-server on a fresh SQLite database as the demo does, renders a first batch and buys a
pack through the API (so the history has rows), builds the extension zip, then runs
scripts/gui/in_blender.py inside Blender with the service's URL and an owner's key. Every number in
the pictures is the ledger's. Pick the ones to keep from --out and copy them to docs/img/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import build_extension  # noqa: E402
import demo  # noqa: E402


def seed(url: str, key: str) -> None:
    """A finished batch and a purchase, so Credits Detail and the history have something to show."""
    h = {"Authorization": f"Bearer {key}"}
    shots = [
        {"name": f"sh{i:03d}", "engine": engine, "tier": tier, "duration_s": 8}
        for i, (engine, tier) in enumerate(
            [("veo-3.1", "high"), ("veo-3.1", "draft"), ("wan-2.6", "standard"), ("seedance-2.0", "high")] * 3, 1
        )
    ]
    job = requests.post(
        f"{url}/jobs",
        json={"name": "seq010 previs", "shots": shots},
        headers={**h, "Idempotency-Key": "seed-job"},
        timeout=10,
    ).json()
    requests.post(
        f"{url}/purchases", json={"pack_id": "pack-250k"}, headers={**h, "Idempotency-Key": "seed-buy"}, timeout=10
    ).raise_for_status()
    deadline = time.monotonic() + 60
    while requests.get(f"{url}/jobs/{job['id']}", headers=h, timeout=10).json()["status"] != "completed":
        if time.monotonic() > deadline:
            sys.exit("the seed batch did not finish")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gui-out")
    ap.add_argument("--scale", default="1.0")
    ap.add_argument("--size", default="1600x900")
    ap.add_argument("--plan", default="pro")
    ap.add_argument("--dialogs", default="batch,shot,buy", help="the dialogs to picture, one Blender run each")
    ap.add_argument("--tool", default=str(ROOT.parent / "shared" / "tools" / "blender-gui"))
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT)  # the service of this checkout, whatever the venv points at
    build_extension.build(ROOT / "dist")
    with tempfile.TemporaryDirectory(prefix="act3-gui-") as tmp:
        proc, url, orgs = demo.start_service(Path(tmp), render_speed=0.01)
        key = next(o for o in orgs["orgs"] if o["plan"] == args.plan)["keys"]["owner"]
        try:
            seed(url, key)
        finally:
            proc.terminate()
            proc.wait(10)
        # The same ledger, served again with renders slow enough to watch a batch in the window.
        proc, url, _orgs = demo.start_service(Path(tmp), render_speed=0.5)
        try:
            for dialog in args.dialogs.split(","):  # one dialog a run: it stays open in its picture
                env = dict(
                    os.environ,
                    ACT3_API_URL=url,
                    ACT3_API_KEY=key,
                    ACT3_GUI_SCALE=args.scale,
                    ACT3_GUI_PREFIX=f"{args.size}-{args.scale}-",
                    ACT3_GUI_DIALOG=dialog,
                )
                script = str(ROOT / "scripts" / "gui" / "in_blender.py")
                run = [args.tool, "run", script, "--project", str(ROOT), "--out", args.out, "--size", args.size]
                subprocess.run([*run, "--timeout", "180"], env=env, check=False)
        finally:
            proc.terminate()
            proc.wait(10)
            log = Path(tmp) / "act3-server.log"
            if log.exists():
                (Path(args.out) / "act3-server.log").write_bytes(log.read_bytes())


if __name__ == "__main__":
    main()
