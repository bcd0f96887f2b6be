"""Shots in the .blend (from camera markers, tagged, filtered) and the interception of another add-on's operator."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from support import blender
from support.layout import RecordingLayout

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()


def camera_markers(scene, frames):
    for m in list(scene.timeline_markers):
        scene.timeline_markers.remove(m)
    for i, frame in enumerate(frames):
        name = f"Cam{i:02d}"
        cam = bpy.data.objects.get(name) or bpy.data.objects.new(name, bpy.data.cameras.new(name))
        if name not in scene.collection.objects:
            scene.collection.objects.link(cam)
        marker = scene.timeline_markers.new(f"sh{(i + 1) * 10:03d}", frame=frame)
        marker.camera = cam
    scene.timeline_markers.new("note", frame=frames[0] + 3)  # not bound: not a shot


def test_shots_from_camera_markers_keep_their_settings_and_survive_save_and_load(studio, tmp_path):
    scene = studio.scene
    scene.frame_start, scene.frame_end = 1, 400
    scene.render.fps, scene.render.fps_base = 24, 1.0
    camera_markers(scene, [1, 97, 241])
    assert bpy.ops.act3.shots_from_markers() == {"FINISHED"}
    shots = scene.act3_shots
    assert [(s.name, s.frame_start, s.frame_end, s.camera.name) for s in shots] == [
        ("sh010", 1, 96, "Cam00"),
        ("sh020", 97, 240, "Cam01"),
        ("sh030", 241, 400, "Cam02"),
    ]
    shots[1].tier, shots[1].engine, shots[1].tags = "high", "wan-2.6", "hero"
    # A new marker in the middle: sh020 keeps its tier, engine and tags, and now ends earlier.
    marker = scene.timeline_markers.new("sh025", frame=169)
    marker.camera = bpy.data.objects["Cam00"]
    assert bpy.ops.act3.shots_from_markers() == {"FINISHED"}
    assert [(s.name, s.frame_start, s.frame_end) for s in shots] == [
        ("sh010", 1, 96),
        ("sh020", 97, 168),
        ("sh025", 169, 240),
        ("sh030", 241, 400),
    ]
    assert (shots[1].tier, shots[1].engine, shots[1].tags) == ("high", "wan-2.6", "hero")
    assert (shots[2].tier, shots[2].engine) == ("standard", "veo-3.1")

    path = str(tmp_path / "shots.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.read_homefile(use_empty=True)
    assert len(bpy.context.scene.act3_shots) == 0
    bpy.ops.wm.open_mainfile(filepath=path)
    again = bpy.context.scene.act3_shots
    assert [(s.name, s.tier, s.engine, s.tags) for s in again][1] == ("sh020", "high", "wan-2.6", "hero")


def test_tag_all_selected_shots_at_once_and_filter_the_list_by_tag(studio):
    items = studio.shots([(f"sh{i}", 1, 96) for i in range(5)])
    for i in (0, 2, 3):
        items[i].select = True
    assert bpy.ops.act3.tag_shots(tag="Hero, seq010") == {"FINISHED"}
    assert [it.tags for it in items] == ["hero, seq010", "", "hero, seq010", "hero, seq010", ""]
    items[3].select = False
    assert bpy.ops.act3.tag_shots(tag="hero", remove=True) == {"FINISHED"}
    assert [it.tags for it in items] == ["seq010", "", "seq010", "hero, seq010", ""]

    studio.settings.tag_filter = "hero"
    ul = SimpleNamespace(filter_name="", use_filter_invert=False, bitflag_filter_item=1 << 30)
    flags, order = bpy.types.ACT3_UL_shots.filter_items(ul, bpy.context, studio.scene, "act3_shots")
    assert [bool(f) for f in flags] == [False, False, False, True, False] and order == []

    # The Shots panel: one row per shot with tier, engine, snapped duration and estimate.
    draw = studio.module("generate.draw")
    props = studio.module("generate.props")
    core = studio.module("core.shots")
    card = props.rate_card()
    line = core.estimate([props.to_shot(studio.scene, items[0])], card, core.Account()).lines[0]
    row = RecordingLayout()
    draw.draw_shot_row(row, items[0], line, card, width=500)
    assert row.texts()[:5] == ["sh0", "Standard", "Veo 3.1", "4 s", "1,040 cr"]
    narrow = RecordingLayout()  # the sidebar's default width: name, tier and credits
    draw.draw_shot_row(narrow, items[0], line, card, width=280)
    assert narrow.texts() == ["sh0", "Standard", "1,040 cr"]
    panel = RecordingLayout()
    bpy.types.ACT3_PT_shots.draw(SimpleNamespace(layout=panel), bpy.context)
    assert panel.operator_button("act3.generate_batch").text == "Generate #hero · 1,040 cr"
    assert panel.operator_button("act3.generate_batch").properties.tag == "hero"


calls: list[dict] = []


class THIRDPARTY_OT_generate(bpy.types.Operator):
    """A third-party Generate that spends credits on its own"""

    bl_idname = "thirdparty.generate"
    bl_label = "Third-party Generate"

    prompt: bpy.props.StringProperty()  # type: ignore[valid-type]
    steps: bpy.props.IntProperty(default=10)  # type: ignore[valid-type]

    def execute(self, context):
        calls.append({"prompt": self.prompt, "steps": self.steps})
        return {"FINISHED"}


class FakeOperator:
    """What `invoke` receives as `self`: the call's properties."""

    def __init__(self, **values):
        self.properties = self

        class _P:
            def __init__(self):
                self.properties = [
                    SimpleNamespace(identifier=k, type="STRING" if isinstance(v, str) else "INT")
                    for k, v in values.items()
                ]

        self.bl_rna = _P()
        self._values = values

    def is_property_set(self, name):
        return name in self._values

    def __getattr__(self, name):
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None


def test_another_addons_generate_runs_only_after_the_cost_estimate(studio, live_server):
    intercept = studio.module("generate.intercept")
    bpy.utils.register_class(THIRDPARTY_OT_generate)
    try:
        studio.connect(live_server, plan="starter")
        studio.shots([("sh010", 1, 192)])
        assert intercept.sync("thirdparty.generate, render.render") == ["render.render"]  # C operators cannot be
        cls = bpy.types.THIRDPARTY_OT_generate
        assert getattr(cls.invoke, "_act3_guard", False)
        assert intercept.guarded_ids() == ["thirdparty.generate"]

        # Invoked from the UI: our estimate runs first (headless it cannot show, so it confirms at once)
        calls.clear()
        assert cls.invoke(FakeOperator(prompt="a fox", steps=4), bpy.context, None) == {"CANCELLED"}
        assert calls == [{"prompt": "a fox", "steps": 4}]
        assert intercept.pending_count() == 0

        # When the estimate refuses, the original never runs.
        studio.scene.act3_shots[0].tier = "4k"
        calls.clear()
        cls.invoke(FakeOperator(prompt="a fox"), bpy.context, None)
        assert calls == []

        # A script calling it directly is not intercepted.
        assert bpy.ops.thirdparty.generate(prompt="batch") == {"FINISHED"}
        assert calls == [{"prompt": "batch", "steps": 10}]
        # Nothing was sent to ACT3 by the estimate itself.
        assert studio.service_jobs(live_server, "starter") == []

        # A script that sets the hidden confirmation itself runs nothing: only the token the guard
        # issued for this operator, once, may confirm it.
        studio.scene.act3_shots[0].tier = "draft"
        calls.clear()
        for then_call in ("thirdparty.generate", "act3.forget_key"):
            with pytest.raises(RuntimeError, match="Nothing to confirm"):
                bpy.ops.act3.generate(then_call=then_call, then_token="forged")
        assert calls == []

        intercept.sync("")
        assert "invoke" not in bpy.types.THIRDPARTY_OT_generate.__dict__
    finally:
        intercept.release_all()
        bpy.utils.unregister_class(THIRDPARTY_OT_generate)


def test_a_guarded_operator_with_its_own_invoke_gets_it_back(studio):
    seen = []

    class THIRDPARTY_OT_render(bpy.types.Operator):
        bl_idname = "thirdparty.render"
        bl_label = "Render"

        def invoke(self, context, event):
            seen.append("own invoke")
            return self.execute(context)

        def execute(self, context):
            return {"FINISHED"}

    original = THIRDPARTY_OT_render.invoke
    bpy.utils.register_class(THIRDPARTY_OT_render)
    intercept = studio.module("generate.intercept")
    try:
        studio.settings.intercept_ops = "THIRDPARTY_OT_render"
        assert intercept.sync(studio.settings.intercept_ops) == []
        assert THIRDPARTY_OT_render.invoke is not original
        # Disabling the add-on puts every guarded operator back as it was.
        blender.disable_extension()
        assert THIRDPARTY_OT_render.invoke is original
        assert THIRDPARTY_OT_render.is_registered
    finally:
        intercept.release_all()
        bpy.utils.unregister_class(THIRDPARTY_OT_render)


def test_budget_guard_and_guarded_operators_live_in_the_preferences(studio):
    """They outlive the session: Blender saves add-on preferences, never the window manager."""
    prefs = bpy.context.preferences.addons[blender.PACKAGE].preferences
    studio.settings.guard_min_balance = 12_345
    studio.settings.intercept_ops = "act3ai.generate"
    assert prefs.generate.guard_min_balance == 12_345
    assert prefs.generate.intercept_ops == "act3ai.generate"
    assert not hasattr(bpy.types.WindowManager, "act3_generate")
    layout = RecordingLayout()
    type(prefs).draw(
        SimpleNamespace(layout=layout, service_url=prefs.service_url, generate=prefs.generate), bpy.context
    )
    assert "Budget Guard and Guarded Operators" in layout.texts()
    drawn = [item.property for item in layout.of_kind("prop") if item.data == prefs.generate]
    assert "guard_min_balance" in drawn and "intercept_ops" in drawn


def test_a_reloaded_addons_operator_is_guarded_again_and_an_unknown_id_is_shown(studio):
    generate, intercept = studio.module("generate"), studio.module("generate.intercept")

    def thirdparty_addon():
        class THIRDPARTY_OT_reload(bpy.types.Operator):
            bl_idname = "thirdparty.reload"
            bl_label = "Reload"

            def execute(self, context):
                return {"FINISHED"}

        return THIRDPARTY_OT_reload

    first = thirdparty_addon()
    bpy.utils.register_class(first)
    second = None
    try:
        studio.settings.intercept_ops = "thirdparty.reload"
        generate._tick()  # the add-on's 2 s timer
        assert intercept.guarded_ids() == ["thirdparty.reload"]

        # The other add-on is disabled and enabled again (or its scripts reloaded): a new class, same id.
        bpy.utils.unregister_class(first)
        second = thirdparty_addon()
        bpy.utils.register_class(second)
        generate._tick()
        assert getattr(second.__dict__.get("invoke"), "_act3_guard", False), "runs without the cost estimate"
        assert intercept.is_guarded("thirdparty.reload")

        # What cannot be guarded is said where it was typed, never silently ignored.
        studio.settings.intercept_ops = "thirdparty.reload, thirdparty.typo, render"
        generate._tick()
        prefs = bpy.context.preferences.addons[blender.PACKAGE].preferences
        layout = RecordingLayout()
        type(prefs).draw(
            SimpleNamespace(layout=layout, service_url=prefs.service_url, generate=prefs.generate), bpy.context
        )
        texts = layout.texts()
        assert "Not guarded: no add-on operator thirdparty.typo (yet)" in texts
        assert "Not guarded: 'render' is not an operator id (module.name)" in texts
        assert not any("thirdparty.reload" in t for t in texts if t.startswith("Not guarded"))
    finally:
        intercept.release_all()
        if second is not None:
            bpy.utils.unregister_class(second)


def test_the_tier_menu_prices_each_tier_for_the_shot_and_marks_4k_unavailable_on_pro(studio, live_server):
    studio.connect(live_server)  # a Pro organisation: Draft, Standard and High
    (item,) = studio.shots([("sh010", 1, 192)], engine="veo-3.1")  # 8 s at 24 fps
    props = studio.module("generate.props")
    items = props.tier_items(item, bpy.context)
    # Veo 3.1 is 260 cr a second at Standard: 8 s is 2,080 cr; Draft half, High double.
    assert [(i[0], i[1], i[3]) for i in items] == [
        ("draft", "Draft · 1,040 cr", "NONE"),
        ("standard", "Standard · 2,080 cr", "NONE"),
        ("high", "High · 4,160 cr", "NONE"),
        ("4k", "4K · Enterprise only", "LOCKED"),
    ]
    assert items[3][2] == "The 4K tier needs the Enterprise plan; this organisation is on Pro."
    # A longer shot, a new price; and Blender reads and writes the menu as before (saved files keep their tier).
    item.frame_end = 96  # 4 s
    assert props.tier_items(item, bpy.context)[2][1] == "High · 2,080 cr"
    item.tier = "high"
    assert item.tier == "high"

    # 4K chosen anyway: the row says it cannot be sent, and why, before any Cost Estimate.
    item.tier = "4k"
    draw = studio.module("generate.draw")
    core = studio.module("core.shots")
    line = core.estimate(
        [props.to_shot(studio.scene, item)], props.rate_card(), core.Account.from_state(studio.state)
    ).lines[0]
    row = RecordingLayout()
    draw.draw_shot_row(row, item, line, props.rate_card(), width=280)
    cell = row.find("—")
    assert (cell.icon, cell.alert) == ("ERROR", True)
    assert "Cannot be sent: The 4K tier needs the Enterprise plan" in item.tooltip
    panel = RecordingLayout()
    bpy.types.ACT3_PT_shots.draw(SimpleNamespace(layout=panel), bpy.context)
    assert panel.find("The 4K tier needs the Enterprise plan").alert


def test_odd_input_to_the_shot_list_and_to_defer_is_one_line_and_changes_nothing(studio, live_server):
    studio.connect(live_server)
    studio.shots([("sh010", 1, 48), ("sh020", 49, 96)])
    scene = studio.scene
    for index in (99, -5, 2**31 - 1):
        scene.act3_shots_index = index
        assert bpy.ops.act3.shot_remove() == {"CANCELLED"}  # with a warning: nothing is selected
        assert [s.name for s in scene.act3_shots] == ["sh010", "sh020"]
    scene.act3_shots_index = 1
    assert bpy.ops.act3.shot_remove() == {"FINISHED"}
    assert [s.name for s in scene.act3_shots] == ["sh010"]
    # Not a list of shots (nested past Python's recursion limit; pairs instead of objects): nothing
    # to defer, said in one line, never a traceback.
    for text in ("[" * 100_000 + "]" * 100_000, '[[[1, "a"], ["b", 2]]]', "not json", '{"name": "sh010"}'):
        with pytest.raises(RuntimeError) as refused:
            bpy.ops.act3.defer_shots(shots_json=text)
        assert str(refused.value).strip() == (
            "Error: The shots to defer are not a list of shot objects; nothing was sent."
        ), refused.value
    # An empty list is not a mistake: nothing needs deferring.
    assert bpy.ops.act3.defer_shots(shots_json="[]") == {"CANCELLED"}
    # A typed job name ACT3 would refuse is said here, in one line, before anything is sent.
    for op, kw in (("generate", {}), ("defer_shots", {"shots_json": '[{"name": "sh010"}]'})):
        with pytest.raises(RuntimeError, match="The job name is over 200 characters, the most ACT3 takes"):
            getattr(bpy.ops.act3, op)(job_name="j" * 201, **kw)
    assert studio.service_jobs(live_server) == []
