"""Build a sample .blend for the GENERATE demo: 12 shots laid out as camera markers at 24 fps.

    .venv/bin/python scripts/make_sample_blend.py [OUT.blend]
    blender -b --python scripts/make_sample_blend.py -- [OUT.blend]

Each of the 12 timeline markers is bound to its own camera (Blender's usual shot layout), shots of
4 to 8 seconds. The ACT3 shot list is filled from the markers, with tags (seq010/seq020, hero),
quality tiers and engines, so the Shots panel and the Cost Estimate have something to show.
Default output: sample_shots.blend in the current directory.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[1]
FPS = 24
# (frames, engine, tier, tags): 12 shots, 4-8 s each at 24 fps.
SHOTS = [
    (192, "veo-3.1", "standard", "seq010, hero"),
    (144, "veo-3.1", "standard", "seq010"),
    (96, "veo-3.1-fast", "draft", "seq010"),
    (180, "veo-3.1", "high", "seq010, hero"),
    (120, "seedance-2.0", "standard", "seq010"),
    (168, "wan-2.6", "standard", "seq010"),
    (192, "veo-3.1", "standard", "seq020, hero"),
    (144, "grok-imagine", "draft", "seq020"),
    (96, "veo-3.1-fast", "standard", "seq020"),
    (156, "seedance-2.0", "high", "seq020"),
    (120, "wan-2.6", "draft", "seq020"),
    (192, "veo-3.1", "standard", "seq020, hero"),
]


def output_path() -> Path:
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    args = [a for a in args if a.endswith(".blend")]
    return Path(args[0]).resolve() if args else Path.cwd() / "sample_shots.blend"


def build_scene() -> bpy.types.Scene:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.name = "seq010_020"
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start = 1
    mesh = bpy.data.meshes.new("Set")
    mesh.from_pydata([(-4, -4, 0), (4, -4, 0), (4, 4, 0), (-4, 4, 0)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(bpy.data.objects.new("Set", mesh))
    frame = 1
    for i, (frames, _engine, _tier, _tags) in enumerate(SHOTS):
        name = f"sh{(i + 1) * 10:03d}"
        cam = bpy.data.objects.new(f"CAM_{name}", bpy.data.cameras.new(f"CAM_{name}"))
        angle = i / len(SHOTS) * 2 * math.pi
        cam.location = (10 * math.cos(angle), 10 * math.sin(angle), 3 + (i % 3))
        cam.rotation_euler = (math.radians(75), 0, angle + math.pi / 2)
        scene.collection.objects.link(cam)
        marker = scene.timeline_markers.new(name, frame=frame)
        marker.camera = cam
        if i == 0:
            scene.camera = cam
        frame += frames
    scene.frame_end = frame - 1
    return scene


def fill_shots_and_save(scene: bpy.types.Scene, out: Path) -> None:
    """The ACT3 shot list from the markers (the add-on's own operator), with tags, tiers, engines.
    Saved while the properties are registered: unregistering them drops their data."""
    registered_here = False
    if not hasattr(bpy.types.Scene, "act3_shots"):
        sys.path.insert(0, str(ROOT))
        from act3_credits import generate

        generate.register()
        registered_here = True
    try:
        result = bpy.ops.act3.shots_from_markers()  # type: ignore[attr-defined]
        assert "FINISHED" in result, result
        for item, (_frames, engine, tier, tags) in zip(scene.act3_shots, SHOTS, strict=True):  # type: ignore[attr-defined]
            item.engine, item.tier, item.tags = engine, tier, tags
        out.parent.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(out))
    finally:
        if registered_here:
            generate.unregister()


def main() -> None:
    out = output_path()
    scene = build_scene()
    fill_shots_and_save(scene, out)
    print(
        f"{out}: {len(scene.timeline_markers)} camera markers, frames {scene.frame_start}-{scene.frame_end} at {FPS} fps"
    )


if __name__ == "__main__":
    main()
