"""Run by the bpy 4.2 interpreter (see test_minimum_blender.py): build the zip with Blender 4.2's own
extension tool, install it through 4.2's extension system, connect it to a live act3-server (from
ACT3_API_URL / ACT3_API_KEY), refresh, and print what the artist would read as JSON on the last
line of stdout."""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import blender
from support.layout import RecordingLayout

bpy = blender.import_bpy()
addon = blender.install_extension()
api = importlib.import_module(blender.PACKAGE + ".api")
layouts = importlib.import_module(blender.PACKAGE + ".layouts")
session = importlib.import_module(blender.PACKAGE + ".session")

fresh = api.refresh(wait=20)
panel = RecordingLayout()
layouts.draw_credits(panel, session.state(), layouts.Thresholds(), bool(bpy.app.online_access))
page = api.history(limit=2)
report = {
    "blender": bpy.app.version_string,
    "fresh": fresh,
    "header": api.header_text(),
    "credits": api.credits().as_dict(),
    "panel": panel.texts(),
    "history_ids": [row["id"] for row in page["items"]],
}
blender.disable_extension()
report["registered_after_disable"] = hasattr(bpy.types, "ACT3_PT_credits")

def act3_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "act3" in t.name.lower()]


# The worker's threads are told to stop and must not outlive a long poll in flight by much.
deadline = time.monotonic() + 2.0
while act3_threads() and time.monotonic() < deadline:
    time.sleep(0.05)
report["act3_threads_after_disable"] = act3_threads()
print(json.dumps(report))
