"""Runs inside a real Blender window (../shared/tools/blender-gui): install the extension, make shots
from camera markers, open the ACT3 sidebar at its default width and take the README's screenshots.

Driven by scripts/screenshots.py, which starts act3-server, builds the zip and passes ACT3_API_URL,
ACT3_API_KEY and ACT3_GUI_* (scale, which views, an output prefix) in the environment.
"""

import glob
import json
import logging
import os
import subprocess
import sys

import blender_gui
import bpy

_h = logging.StreamHandler(sys.stdout)
logging.getLogger("act3_credits").addHandler(_h)
logging.getLogger("act3_credits").setLevel(logging.INFO)

OUT = os.environ.get("BLENDER_GUI_OUT", "/out")
PREFIX = os.environ.get("ACT3_GUI_PREFIX", "")
SCALE = float(os.environ.get("ACT3_GUI_SCALE", "1.0"))
VIEWS = os.environ.get("ACT3_GUI_VIEWS", "panel").split(",")
SIDEBAR = int(os.environ.get("ACT3_GUI_SIDEBAR", "0"))  # 0: Blender's default width


def log(*args):
    print("gui:", *args, flush=True)


def install():
    zips = sorted(glob.glob("/project/dist/act3_credits-*.zip"))
    bpy.context.preferences.system.use_online_access = True
    bpy.ops.extensions.package_install_files(filepath=zips[-1], repo="user_default", enable_on_install=True)
    bpy.context.preferences.view.ui_scale = SCALE


def make_shots():
    scene = bpy.context.scene
    scene.render.fps = 24
    spec = [
        (192, "veo-3.1", "standard", "seq010, hero"),
        (144, "veo-3.1", "high", "seq010"),
        (96, "veo-3.1-fast", "draft", "seq010"),
        (168, "wan-2.6", "standard", "seq010, hero"),
        (120, "seedance-2.0", "4k", "seq020"),
        (156, "grok-imagine", "high", "seq020, hero"),
    ]
    frame = 1
    for i, (frames, _engine, _tier, _tags) in enumerate(spec):
        cam_data = bpy.data.cameras.new(f"cam{i}")
        cam = bpy.data.objects.new(f"CAM_sh{(i + 1) * 10:03d}", cam_data)
        scene.collection.objects.link(cam)
        m = scene.timeline_markers.new(f"sh{(i + 1) * 10:03d}", frame=frame)
        m.camera = cam
        frame += frames
    scene.frame_start, scene.frame_end = 1, frame - 1
    bpy.ops.act3.shots_from_markers()
    for item, (_f, engine, tier, tags) in zip(scene.act3_shots, spec, strict=True):
        item.engine, item.tier, item.tags = engine, tier, tags
    scene.act3_shots_index = 1


def view3d():
    areas = [a for a in bpy.context.window.screen.areas if a.type == "VIEW_3D"]
    return max(areas, key=lambda a: a.width * a.height)


def open_sidebar():
    area = view3d()
    area.spaces.active.show_region_ui = True
    area.tag_redraw()


def sidebar_region():
    area = view3d()
    return area, next(r for r in area.regions if r.type == "UI")


def set_tab():
    """Blender 4.3 cannot set the sidebar's tab from Python: click the ACT3 tab, the last one."""
    area, region = sidebar_region()
    try:
        region.active_panel_category = "ACT3"
        return
    except Exception:
        pass
    win = bpy.context.window
    scale = bpy.context.preferences.system.ui_scale
    # The tabs run down the region's right edge from its top: Item, Tool, View, ACT3.
    x = region.x + region.width - int(10 * scale)
    y_top = win.height - (region.y + region.height)
    tab_y = int(os.environ.get("ACT3_GUI_TAB_Y", "0")) or y_top + int(168 * scale)
    log("click tab", x, tab_y, region.x, region.y, region.width, region.height)
    blender_gui.click(x, tab_y)


def crop(name, region, extra_h=0):
    """The sidebar region as its own picture."""
    win = bpy.context.window
    full = os.path.join(OUT, PREFIX + name + "-full.png")
    os.rename(blender_gui.snap(PREFIX + name + "-full"), full)
    x, y, w, h = region.x, region.y, region.width, region.height
    top = win.height - (y + h)
    out = os.path.join(OUT, PREFIX + name + ".png")
    subprocess.run(["convert", full, "-crop", f"{w}x{h}+{x}+{top}", "+repage", out], check=True)
    log("cropped", out, w, h)


def addon():
    import importlib
    return importlib.import_module("bl_ext.user_default.act3_credits")


def info():
    import importlib
    pkg = addon().__name__
    timers = importlib.import_module(pkg + ".timers")
    session = importlib.import_module(pkg + ".session")
    try:
        timers.tick()
    except Exception:
        import traceback
        traceback.print_exc()
    runtime = importlib.import_module(pkg + ".runtime")
    w = runtime.worker()
    import threading
    import traceback
    for th in threading.enumerate():
        frame = sys._current_frames().get(th.ident)
        if frame is not None and th is not threading.main_thread():
            log("THREAD", th.name, "".join(traceback.format_stack(frame)[-4:]))
    log("worker", w._generation, w._results.qsize(), w._running, w._link, bpy.app.online_access)
    st = session.state()
    log("state", st.connection, st.last_error, st.header_text())
    sett = session.settings()
    log("settings", sett.base_url, bool(sett.api_key), sett.online_access, {k: v[:25] for k, v in os.environ.items() if k.startswith("ACT3")})
    log("topbar draw funcs", [getattr(f, "__module__", f) for f in bpy.types.TOPBAR_HT_upper_bar._dyn_ui_initialize()])
    area, region = sidebar_region()
    log(json.dumps({"region_width": region.width, "scale": bpy.context.preferences.system.ui_scale,
                    "window": [bpy.context.window.width, bpy.context.window.height]}))


STEPS = []


def step(delay):
    def deco(fn):
        STEPS.append((delay, fn))
        return fn
    return deco


def run_steps():
    t = 0.0
    for delay, fn in STEPS:
        t += delay
        blender_gui.after(t, fn)


@step(1.0)
def s_install():
    install()
    make_shots()
    open_sidebar()


@step(1.0)
def s_tab():
    set_tab()


@step(4.0)
def s_info():
    set_tab()
    info()
    blender_gui.redraw()


@step(4.0)
def s_info2():
    info()
    blender_gui.redraw()


@step(1.0)
def s_panel():
    area, region = sidebar_region()
    crop("sidebar", region)
    blender_gui.snap(PREFIX + "screen")


@step(1.0)
def s_quit():
    blender_gui.quit()


run_steps()
