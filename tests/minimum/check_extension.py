"""Run by the bpy 4.2 interpreter (see test_minimum_blender.py): build the zip with Blender 4.2's own
extension tool, install it through 4.2's extension system, connect it to a live act3-server (from
ACT3_API_URL / ACT3_API_KEY), refresh, and print what the artist would read as JSON on the last
line of stdout."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import blender
from support.layout import RecordingLayout

bpy = blender.import_bpy()
addon = blender.install_extension()
api = importlib.import_module(blender.PACKAGE + ".api")
credits_draw = importlib.import_module(blender.PACKAGE + ".credits.draw")
session = importlib.import_module(blender.PACKAGE + ".session")

fresh = api.refresh(wait=20)
panel = RecordingLayout()
credits_draw.draw_credits(panel, session.state(), credits_draw.Thresholds(), bool(bpy.app.online_access))
page = api.history(limit=2)
report = {
    "blender": bpy.app.version_string,
    "fresh": fresh,
    "header": api.header_text(),
    "credits": api.credits().as_dict(),
    "panel": panel.texts(),
    "history_ids": [row["id"] for row in page["items"]],
}
# GENERATE under 4.2: camera markers -> shots at 29.97 fps, the batch sent and paused, resumed and
# canceled from the operators (headless, they wait for the service's answer themselves).
runtime = importlib.import_module(blender.PACKAGE + ".runtime")
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 96
scene.render.fps, scene.render.fps_base = 30, 1.001
for i, frame in enumerate((1, 49)):
    camera = bpy.data.objects.new(f"Cam{i}", bpy.data.cameras.new(f"Cam{i}"))
    scene.collection.objects.link(camera)
    scene.timeline_markers.new(f"sh0{i + 1}0", frame=frame).camera = camera
ops = {"shots_from_markers": sorted(bpy.ops.act3.shots_from_markers())}
report["shots"] = [(s.name, s.frame_start, s.frame_end, s.camera.name) for s in scene.act3_shots]
ops["generate_batch"] = sorted(bpy.ops.act3.generate_batch())
job_id = max(runtime.state().jobs)
for action in ("job_pause", "job_resume", "job_cancel"):
    ops[action] = sorted(getattr(bpy.ops.act3, action)(job_id=job_id))
report["job"] = api.job(job_id)
csv_path = Path(tempfile.mkdtemp(prefix="act3-csv-")) / "act3-history.csv"
ops["export_history_csv"] = sorted(bpy.ops.act3.export_history_csv(filepath=str(csv_path)))
try:
    bpy.ops.act3.export_history_csv(filepath=str(csv_path.parent / "no-such-folder" / "h.csv"))
except RuntimeError as exc:
    report["unwritable_csv"] = str(exc)
report["ops"] = ops
api.refresh(wait=20)
report["after_cancel"] = api.credits().as_dict()

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
