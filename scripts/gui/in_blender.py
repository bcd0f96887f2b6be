"""Runs inside a real Blender window (the blender-gui tool): install the extension, make shots from
camera markers, open the ACT3 sidebar at its default width and take the README's screenshots.

Driven by scripts/screenshots.py, which starts act3-server, builds the zip and passes ACT3_API_URL,
ACT3_API_KEY and ACT3_GUI_* (UI scale, an output prefix) in the environment. Each step runs on
Blender's main thread from a timer, a few seconds after the one before.
"""

import glob
import importlib
import json
import logging
import os
import subprocess

import blender_gui
import bpy

OUT = os.environ.get("BLENDER_GUI_OUT", "/out")
PREFIX = os.environ.get("ACT3_GUI_PREFIX", "")
SCALE = float(os.environ.get("ACT3_GUI_SCALE", "1.0"))
# Wheel notches (40 px at UI scale 1) from the sidebar's top down to the Spend panel, and down to the
# Shots panel (past Credits Detail with its project budget, Spend with its ten top shots, and the
# history): measured on the pictures at 1600x900, UI scale 1.
SPEND_NOTCHES = int(os.environ.get("ACT3_GUI_SPEND_NOTCHES", "15"))
SHOTS_NOTCHES = int(os.environ.get("ACT3_GUI_SHOTS_NOTCHES", "39"))
SHOTS = [
    (192, "veo-3.1", "standard", "seq010, hero"),
    (144, "veo-3.1", "high", "seq010"),
    (96, "veo-3.1-fast", "draft", "seq010"),
    (168, "wan-2.6", "standard", "seq010, hero"),
    (120, "seedance-2.0", "4k", "seq020"),  # not on Pro: the row says why
    (156, "grok-imagine", "high", "seq020, hero"),
]


logging.basicConfig(level=logging.WARNING)  # the add-on's own warnings and tracebacks reach the run's log


def log(*args):
    print("gui:", *args, flush=True)


def module(name):
    return importlib.import_module(f"bl_ext.user_default.act3_credits.{name}")


# ------------------------------------------------------------------------------------ set-up


def install():
    zips = sorted(glob.glob("/project/dist/act3_credits-*.zip"))
    bpy.context.preferences.system.use_online_access = True
    bpy.ops.extensions.package_install_files(filepath=zips[-1], repo="user_default", enable_on_install=True)
    bpy.context.preferences.view.ui_scale = SCALE


def make_shots():
    scene = bpy.context.scene
    scene.render.fps = 24
    frame = 1
    for i, (frames, _engine, _tier, _tags) in enumerate(SHOTS):
        cam = bpy.data.objects.new(f"CAM_sh{(i + 1) * 10:03d}", bpy.data.cameras.new(f"cam{i}"))
        scene.collection.objects.link(cam)
        marker = scene.timeline_markers.new(f"sh{(i + 1) * 10:03d}", frame=frame)
        marker.camera = cam
        frame += frames
    scene.frame_start, scene.frame_end = 1, frame - 1
    bpy.ops.act3.shots_from_markers()
    for item, (_f, engine, tier, tags) in zip(scene.act3_shots, SHOTS, strict=True):
        item.engine, item.tier, item.tags = engine, tier, tags
    scene.act3_shots_index = 1


def view3d():
    areas = [a for a in bpy.context.window.screen.areas if a.type == "VIEW_3D"]
    return max(areas, key=lambda a: a.width * a.height)


def region_of(area, kind):
    return next(r for r in area.regions if r.type == kind)


def top_left(region):
    """A region's top-left corner in screen pixels (Blender counts from the bottom)."""
    win = bpy.context.window
    return region.x, win.height - (region.y + region.height)


def only_act3_tab():
    """Leave ACT3 the sidebar's only tab: clicks on the tabs do not reach this Blender (4.3 under
    Xvfb on a loaded machine), and 4.3 cannot choose a tab from Python. The Python panels of the
    other tabs go; Item's Transform panel (C) shows only with an active object, so none is active.
    The sidebar keeps its width: the panels read as an artist who picked the ACT3 tab sees them."""
    bpy.context.view_layer.objects.active = None
    for _ in range(3):  # children first: a parent with registered children cannot go
        for name in dir(bpy.types):
            cls = getattr(bpy.types, name, None)
            if not (isinstance(cls, type) and issubclass(cls, bpy.types.Panel)):
                continue
            if getattr(cls, "bl_space_type", "") != "VIEW_3D" or getattr(cls, "bl_region_type", "") != "UI":
                continue
            if getattr(cls, "bl_category", "") == "ACT3" or not cls.is_registered:
                continue
            try:
                bpy.utils.unregister_class(cls)
            except RuntimeError:
                pass
    # A second tab after ACT3 keeps the tab strip (and so the panels' width) as an artist has it;
    # the first tab is the one a fresh sidebar shows.
    bpy.utils.register_class(OtherTab)


class OtherTab(bpy.types.Panel):
    bl_idname = "GUI_PT_other_tab"
    bl_label = "View"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "View"

    def draw(self, context):
        pass


def click_tab():
    """Blender 4.3 cannot set the sidebar's tab from Python: click ACT3, the fourth tab."""
    area = view3d()
    region = region_of(area, "UI")
    try:
        region.active_panel_category = "ACT3"
        if region.active_panel_category == "ACT3":
            return
    except (AttributeError, TypeError):
        pass
    scale = bpy.context.preferences.system.ui_scale
    x, y = top_left(region)
    where = (x + region.width - int(10 * scale), y + int(168 * scale))
    log("tab click at", where, getattr(region, "active_panel_category", "?"))
    blender_gui.move(*where)
    blender_gui.after(0.6, lambda: blender_gui.click(*where))


def settle(until, seconds=20.0):
    """Run the add-on's heartbeat here until `until()` (this Blender calls the pumped timers late
    or not at all on a loaded machine), then redraw."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        module("timers").tick()
        if until():
            break
        time.sleep(0.1)
    blender_gui.redraw()


def scroll_sidebar(notches):
    """Scroll the sidebar by wheel notches (40 px each), with the View2D operators: the wheel's
    clicks do not always reach this Blender."""
    area = view3d()
    region = region_of(area, "UI")
    x, y = top_left(region)
    blender_gui.move(x + region.width // 2, y + region.height // 2)
    with bpy.context.temp_override(window=bpy.context.window, area=area, region=region):
        for _ in range(abs(notches)):
            if notches > 0:
                bpy.ops.view2d.scroll_down()
            else:
                bpy.ops.view2d.scroll_up()
    region.tag_redraw()


# ------------------------------------------------------------------------------------ pictures


def crop(name, x, y, w, h):
    full = blender_gui.snap(PREFIX + name + "-full")
    out = os.path.join(OUT, PREFIX + name + ".png")
    subprocess.run(["convert", full, "-crop", f"{w}x{h}+{x}+{y}", "+repage", out], check=True)
    os.remove(full)
    log("picture", out, w, h)


def snap_sidebar(name):
    region = region_of(view3d(), "UI")
    x, y = top_left(region)
    crop(name, x, y, region.width, region.height)


def snap_topbar(name):
    win = bpy.context.window
    scale = bpy.context.preferences.system.ui_scale
    crop(name, win.width - int(620 * scale), 0, int(620 * scale), int(60 * scale))


def pointer():
    """Where dialogs open: a third of the way down the 3D View, in its middle."""
    region = region_of(view3d(), "WINDOW")
    x, y = top_left(region)
    return x + region.width // 2, y + region.height // 3


def invoke(op, **props):
    """Open an operator's dialog as a click in the 3D View would."""
    area = view3d()
    region = region_of(area, "WINDOW")
    blender_gui.move(*pointer())
    with bpy.context.temp_override(window=bpy.context.window, area=area, region=region):
        op("INVOKE_DEFAULT", **props)


def state():
    return module("session").state()


# ------------------------------------------------------------------------------------ the steps

STEPS = []


def step(delay):
    def deco(fn):
        STEPS.append((delay, fn))
        return fn

    return deco


@step(1.0)
def s_shots_and_sidebar():
    # The extension is installed at start-up, not from a timer: a timer an add-on registers while
    # another timer runs is never called in Blender 4.3, and the add-on's sync runs on its timer.
    make_shots()
    only_act3_tab()
    area = view3d()
    area.spaces.active.show_region_ui = True
    area.tag_redraw()


@step(1.5)
def s_tab():
    click_tab()


@step(18.0)  # the first answer can take a while on this shared machine's virtual screen
def s_synced():
    settle(lambda: state().spend is not None)
    click_tab()


@step(2.0)
def s_log():
    log("pointer for dialogs", pointer())
    s = state()
    region = region_of(view3d(), "UI")
    log(
        json.dumps(
            {
                "connection": s.connection,
                "header": s.header_text(),
                "region_width": region.width,
                "ui_scale": bpy.context.preferences.system.ui_scale,
            }
        )
    )
    blender_gui.redraw()


@step(1.0)
def s_credits():
    snap_sidebar("credits-panel")
    snap_topbar("topbar-idle")


@step(0.5)
def s_spend_settle():
    settle(lambda: state().spend is not None)
    log("spend", json.dumps(module("credits.draw").spend_table(state())))
    # This Blender drops the sidebar's first scroll (seen in session 8): spend it on a notch down
    # and back, so the scroll to the Spend panel below is a second one.
    scroll_sidebar(1)
    scroll_sidebar(-1)


@step(1.0)  # a scroll in the same beat as the redraw before it can be clamped to nothing
def s_spend_scroll():
    # The Spend sub-panel sits under Credits Detail: scroll it to the top of the sidebar.
    scroll_sidebar(SPEND_NOTCHES)


@step(1.5)
def s_spend():
    snap_sidebar("spend")
    scroll_sidebar(-SPEND_NOTCHES)


@step(0.5)
def s_send_batch():
    # Generate #hero from a script: three shots, held at once, charged one by one.
    bpy.ops.act3.generate_batch(tag="hero")


@step(7.0)
def s_topbar_held():
    log("header while the batch runs:", state().header_text())
    snap_topbar("topbar-held")
    # The scroll leaves the pointer over the sidebar: no tooltip may cover the Shots list.
    bpy.context.preferences.view.show_tooltips = False
    scroll_sidebar(SHOTS_NOTCHES)


@step(1.5)
def s_shots():
    snap_sidebar("shots")
    scroll_sidebar(12)


@step(1.5)
def s_queue():
    jobs = sorted(state().jobs)
    if jobs:
        module("generate.ops").expanded_jobs.add(jobs[-1])
    blender_gui.redraw()


@step(3.0)  # panels glide to their new places over a few redraws
def s_queue_snap():
    snap_sidebar("render-queue")
    bpy.context.preferences.view.show_tooltips = True


@step(0.5)
def s_tier_menu():
    # The Quality menu of the active shot, opened where the pointer is (over the sidebar); no
    # tooltips for this picture, so none covers the prices.
    bpy.context.preferences.view.show_tooltips = False
    region = region_of(view3d(), "UI")
    x, y = top_left(region)
    blender_gui.move(x + region.width // 2, y + region.height // 2)
    with bpy.context.temp_override(window=bpy.context.window, area=view3d(), region=region):
        bpy.ops.wm.context_menu_enum("INVOKE_DEFAULT", data_path="scene.act3_shots[1].tier")


@step(0.8)
def s_tier_menu_pointer():
    # Off the items (their tooltips would cover the prices), still over the menu.
    region = region_of(view3d(), "UI")
    x, y = top_left(region)
    blender_gui.move(x + region.width // 2 + 60, y + region.height // 2 - 28)


@step(1.2)
def s_tier_menu_snap():
    region = region_of(view3d(), "UI")
    x, y = top_left(region)
    crop("tier-menu", x - 120, y + region.height // 2 - 160, region.width + 120, 330)
    blender_gui.key("Escape")
    bpy.context.preferences.view.show_tooltips = True
    scroll_sidebar(-40)


# One dialog a run (DIALOG): a click on a dialog's Cancel does not reach Blender here, and neither
# does Escape, so each run ends with the dialog it pictures still open.
DIALOG = os.environ.get("ACT3_GUI_DIALOG", "batch")
DIALOGS = {
    "batch": (lambda: bpy.ops.act3.generate_batch, {"tag": ""}, "estimate-batch"),
    "shot": (lambda: bpy.ops.act3.generate, {}, "estimate-shot"),
    "buy": (lambda: bpy.ops.act3.buy_credits, {}, "buy-credits"),
    "budget": (lambda: bpy.ops.act3.generate_batch, {"tag": ""}, "estimate-budget"),
}


@step(1.0)
def s_budget():
    """For the budget dialog: a refuse budget on the scene's project the batch does not fit, so the
    Cost Estimate refuses in words and offers Defer."""
    if DIALOG != "budget":
        return
    import requests

    bpy.context.scene.act3_project = "harbour-spot"
    url, key = os.environ["ACT3_API_URL"], os.environ["ACT3_API_KEY"]
    body = {"credits": 5_000, "period": "billing_period", "action": "refuse"}
    requests.put(f"{url}/budgets/harbour-spot", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    module("session").request("budgets")


@step(1.0)
def s_dialog():
    op, props, _name = DIALOGS[DIALOG]
    invoke(op(), **props)


@step(2.0)
def s_dialog_snap():
    blender_gui.snap(PREFIX + DIALOGS[DIALOG][2])


@step(1.0)
def s_quit():
    blender_gui.quit()


def run_steps():
    t = 0.0
    for delay, fn in STEPS:
        t += delay
        blender_gui.after(t, fn)


def pump_add_on_timers(seconds, every=0.2):
    """Blender 4.3 as the blender-gui tool ships it (Debian's build, Python 3.13) calls a timer that
    returns a float only once, and never calls a timer registered while another runs: the add-on's
    heartbeat (drain the sync, redraw) would stop after its first beat. One-shot timers registered
    now stand in for it, calling the add-on's own timer functions as Blender would."""

    def beat():
        module("timers").tick()
        module("generate")._tick()

    for i in range(int(seconds / every)):
        blender_gui.after(0.5 + i * every, beat)


install()
pump_add_on_timers(90)
run_steps()
