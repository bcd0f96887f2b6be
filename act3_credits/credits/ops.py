"""Operators: each queues work for the core's worker and returns at once; every one runs headless.

Answers arrive in the state on a later drain (the timer, or a script's own drain), which is where
the balance, the history and `state.last_message` / `state.last_error` change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from typing import Any

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from .. import prefs, session
from ..core import formatting
from ..core.client import new_idempotency_key
from ..widgets import CATEGORY, CREDITS_PANEL
from . import draw, export, props


def online(cls) -> bool:
    """Operators that talk to ACT3 are greyed out with the reason while online access is off."""
    if not bpy.app.online_access:
        cls.poll_message_set("Online access is off: turn on Preferences > System > Network > Allow Online Access.")
        return False
    return True


class ACT3_OT_refresh(bpy.types.Operator):
    """Fetch the balance, plan and latest history from ACT3 now"""

    bl_idname = "act3.refresh"
    bl_label = "Refresh ACT3 Credits"

    @classmethod
    def poll(cls, context):
        return online(cls)

    def execute(self, context):
        session.request("refresh")
        return {"FINISHED"}


class ACT3_OT_status(bpy.types.Operator):
    """Refresh the ACT3 credits now"""

    bl_idname = "act3.status"
    bl_label = "ACT3 Status"
    bl_options = {"INTERNAL"}

    @classmethod
    def description(cls, context, properties):
        # The Credits Detail panel's status line is this button: its tooltip tells the whole story.
        st = draw.status(session.state(), prefs.THRESHOLDS, bool(bpy.app.online_access))
        return f"{st.tooltip}\nClick to refresh."

    def execute(self, context):
        if bpy.app.online_access:
            session.request("refresh")
        return {"FINISHED"}


class ACT3_OT_open_credits(bpy.types.Operator):
    """Show the ACT3 credits details"""

    bl_idname = "act3.open_credits"
    bl_label = "ACT3 Credits"

    @classmethod
    def description(cls, context, properties):
        return draw.header_tooltip(session.state(), prefs.THRESHOLDS)

    def execute(self, context):
        window = context.window
        if window is None or window.screen is None:  # headless: nothing to open, say the balance
            state = session.state()
            self.report({"INFO"}, f"ACT3: {state.header_text()}, {state.as_of_text()}")
            return {"FINISHED"}
        area = _view3d_area(context)
        if area is None:
            bpy.ops.wm.call_panel(name=CREDITS_PANEL, keep_open=True)
            return {"FINISHED"}
        area.spaces.active.show_region_ui = True
        if not _show_act3_tab(area):
            # The sidebar was hidden, so its tabs do not exist until it has drawn once: try again shortly.
            _retry_tab(window.as_pointer(), area.as_pointer())
        area.tag_redraw()
        return {"FINISHED"}


def _view3d_area(context):
    if context.area is not None and context.area.type == "VIEW_3D":
        return context.area
    areas = [a for a in context.window.screen.areas if a.type == "VIEW_3D"]
    return max(areas, key=lambda a: a.width * a.height, default=None)


def _show_act3_tab(area) -> bool:
    """Make ACT3 the sidebar's active tab; False while the sidebar has no tabs yet (never drawn)."""
    for region in area.regions:
        if region.type == "UI":
            try:
                region.active_panel_category = CATEGORY
            except (TypeError, AttributeError):
                return False
            return region.active_panel_category == CATEGORY
    return False


def _retry_tab(window_pointer: int, area_pointer: int, tries: int = 20) -> None:
    """Set the tab once the sidebar has drawn; the area is found again by pointer, never kept."""
    counter = iter(range(tries))

    def again():
        wm = bpy.context.window_manager
        for window in wm.windows if wm is not None else ():
            if window.as_pointer() != window_pointer or window.screen is None:
                continue
            for area in window.screen.areas:
                if area.as_pointer() == area_pointer:
                    if _show_act3_tab(area):
                        area.tag_redraw()
                        return None
                    return 0.05 if next(counter, None) is not None else None
        return None

    bpy.app.timers.register(again, first_interval=0.05)


class ACT3_OT_test_connection(bpy.types.Operator):
    """Check the service URL and API key: shows the organisation, plan and your role"""

    bl_idname = "act3.test_connection"
    bl_label = "Test Connection"

    @classmethod
    def poll(cls, context):
        return online(cls)

    def execute(self, context):
        session.request("test_connection")
        self.report({"INFO"}, "Testing the connection to ACT3…")
        return {"FINISHED"}


class ACT3_OT_history_more(bpy.types.Operator):
    """Load the next page of the transaction history"""

    bl_idname = "act3.history_more"
    bl_label = "Load More History"

    @classmethod
    def poll(cls, context):
        if not online(cls):
            return False
        history = session.state().history
        if history.loading:
            cls.poll_message_set("The next page is on its way.")
            return False
        if history.loaded_once and history.next_cursor is None:
            cls.poll_message_set("All of the history is loaded.")
            return False
        return True

    def execute(self, context):
        session.request("history_more")
        return {"FINISHED"}


class ACT3_OT_history_filter(bpy.types.Operator):
    """Show only the history of one quality tier and/or shot name (filtered by the service)"""

    bl_idname = "act3.history_filter"
    bl_label = "Filter History"

    tier: EnumProperty(name="Tier", items=draw.TIER_FILTER_ITEMS, default="ALL")  # type: ignore[valid-type]
    shot: StringProperty(name="Shot", description="Part of a shot name (any case)")  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        return online(cls)

    def execute(self, context):
        tier = "" if self.tier == "ALL" else self.tier
        shot = self.shot.strip()
        ui = getattr(context.window_manager, "act3", None)
        if ui is not None:
            props.set_filter(ui, tier, shot)
        props.request_history(tier, shot)
        return {"FINISHED"}


class ACT3_OT_export_history_csv(bpy.types.Operator, ExportHelper):
    """Write the loaded transaction history (with its filter) to a CSV file"""

    bl_idname = "act3.export_history_csv"
    bl_label = "Export History CSV"

    filename_ext = ".csv"
    filter_glob: StringProperty(default="*.csv", options={"HIDDEN"})  # type: ignore[valid-type]

    def invoke(self, context, event):
        if not self.filepath:  # type: ignore[has-type]
            folder = os.path.dirname(bpy.data.filepath) or os.path.expanduser("~")
            self.filepath = os.path.join(folder, f"act3-history-{dt.date.today().isoformat()}.csv")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.filepath:  # type: ignore[has-type]
            self.report({"ERROR"}, "Choose a file to export the history to.")
            return {"CANCELLED"}
        import csv  # here, not at enable (about 1 ms of it)

        if self.filepath.startswith("//") and not bpy.data.filepath:
            self.report({"ERROR"}, "A path starting with // is beside the .blend: save the .blend first, or choose a folder.")
            return {"CANCELLED"}
        path = bpy.path.abspath(self.filepath)
        rows = session.state().history.rows
        # Written beside it (beside a link's target), then moved over it: a failed write (a full
        # disk) leaves the file that was there as it was, never half a CSV. In a folder where no
        # new file may be made, the file itself is written, as before.
        target = os.path.realpath(path)
        part = f"{target}.part"
        try:
            try:
                f = open(part, "w", newline="", encoding="utf-8")
            except PermissionError:
                part = target
                f = open(target, "w", newline="", encoding="utf-8")
            with f:
                writer = csv.writer(f)
                writer.writerow(export.HEADER)
                writer.writerows(export.csv_rows(rows))
            if part != target:
                os.replace(part, target)
        except OSError as err:
            if part != target:
                with contextlib.suppress(OSError):
                    os.remove(part)
            self.report({"ERROR"}, f"Could not write {path}: {err.strerror or err}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {len(rows)} history rows to {os.path.basename(path)}")
        return {"FINISHED"}


SCRIPT_WAIT_S = 30.0  # how long a script's purchase or setting waits for the service in `blender -b`


def _answered(op: Any, ticket: Any, worker: Any, unsure: str) -> bool:
    """A script in `blender -b`, where no timer drains the worker: wait for the service's answer.
    False, reported in one line, when it refused or did not answer in time (`unsure` says what
    that means for what was asked)."""
    if not worker.wait(ticket, SCRIPT_WAIT_S):
        op.report({"ERROR"}, f"No answer from ACT3 within {SCRIPT_WAIT_S:g} s; {unsure}.")
        return False
    if not ticket.ok:
        op.report({"ERROR"}, formatting.one_line(str(ticket.error), 300))
        return False
    return True


def _pack_items(self, context):
    # Blender keeps only pointers to the strings of dynamic enum items: a list handed out must stay
    # alive and unchanged while a dialog shows it, so a new one is made only when the packs change.
    global _pack_items_cache
    items = [(str(p.get("id")), draw.pack_label(p), f"Buy {draw.pack_label(p)}") for p in session.state().packs] or [
        ("NONE", "No credit packs loaded", "")
    ]
    if items != _pack_items_cache:
        _pack_items_cache = items
    return _pack_items_cache


_pack_items_cache: list[tuple[str, str, str]] = []


class ACT3_OT_buy_credits(bpy.types.Operator):
    """Buy a credit pack for your organisation, paid with the card on file"""

    bl_idname = "act3.buy_credits"
    bl_label = "Buy Credits"
    bl_options = {"INTERNAL"}

    pack_id: StringProperty(name="Pack", description="Id of the credit pack, e.g. pack-250k")  # type: ignore[valid-type]
    pack: EnumProperty(name="Credit Pack", items=_pack_items, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    # One key per confirmation: Redo and retries of this purchase reuse it, so nothing is bought twice.
    idempotency_key: StringProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        if not online(cls):
            return False
        refusal = draw.buy_refusal(session.state())
        if refusal:
            cls.poll_message_set(refusal)
            return False
        return True

    def invoke(self, context, event):
        state = session.state()
        if not state.packs:
            session.request("packs")
        if self.pack_id:  # a button for one pack: preselect it, the artist still confirms
            try:
                self.pack = self.pack_id
            except TypeError:
                pass
            self.pack_id = ""
        return context.window_manager.invoke_props_dialog(self, width=360, title="Buy Credits", confirm_text="Confirm")

    def draw(self, context):
        draw.draw_buy_dialog(self.layout, session.state(), self)

    def execute(self, context):
        pack_id = self.pack_id or (self.pack if self.pack != "NONE" else "")
        if not pack_id:
            self.report({"ERROR"}, "The credit packs are still loading from ACT3: try again in a moment.")
            return {"CANCELLED"}
        if not self.idempotency_key:
            self.idempotency_key = new_idempotency_key()
        worker = session.worker_or_none()
        if bpy.app.background and worker is None:
            self.report({"ERROR"}, session.NOT_RUNNING)
            return {"CANCELLED"}
        ticket = session.request("buy", pack_id=pack_id, idempotency_key=self.idempotency_key)
        if bpy.app.background and worker is not None:  # a script: no timer drains the worker; wait, report it
            if not _answered(self, ticket, worker, "the purchase may still go through: check the balance first"):
                return {"CANCELLED"}
            self.report({"INFO"}, worker.purchase_line(ticket.result))
            return {"FINISHED"}
        pack = next((p for p in session.state().packs if p.get("id") == pack_id), None)
        self.report({"INFO"}, f"Buying {draw.pack_label(pack) if pack else formatting.one_line(pack_id)}…")
        return {"FINISHED"}


class ACT3_OT_runway(bpy.types.Operator):
    """Fetch the period's spend and the runway from ACT3 now"""

    bl_idname = "act3.runway"
    bl_label = "ACT3 Runway"
    bl_options = {"INTERNAL"}

    @classmethod
    def description(cls, context, properties):
        # The runway line under the monthly allocation is this button: its tooltip is the whole sentence.
        return draw.runway(session.state()).tooltip

    def execute(self, context):
        if bpy.app.online_access and session.worker_or_none() is not None:
            session.request("spend")
        return {"FINISHED"}


class ACT3_OT_select_shot(bpy.types.Operator):
    """Select this shot in the Shots list"""

    bl_idname = "act3.select_shot"
    bl_label = "Select Shot"
    bl_options = {"INTERNAL", "UNDO"}

    shot: StringProperty(name="Shot", description="The name of a shot of this scene")  # type: ignore[valid-type]

    @classmethod
    def description(cls, context, properties):
        spend = session.state().spend
        group = next((g for g in spend.top_shots.groups if g.key == properties.shot), None) if spend else None
        cost = f"{properties.shot}: {draw.formatting.credits(group.credits)} this period" if group else properties.shot
        if _shot_index(context.scene, properties.shot) is None:
            return f"{cost} ({group.shots if group else 0} renders).\nNo shot of that name in this scene's Shots list."
        return f"{cost} ({group.shots if group else 0} renders).\nClick to select it in the Shots list."

    def execute(self, context):
        index = _shot_index(context.scene, self.shot)
        if index is None:
            self.report({"WARNING"}, f"No shot named {self.shot!r} in this scene's Shots list.")
            return {"CANCELLED"}
        context.scene.act3_shots_index = index
        return {"FINISHED"}


def _shot_index(scene, name: str) -> int | None:
    shots = getattr(scene, "act3_shots", None) if scene is not None else None
    for i, shot in enumerate(shots or ()):
        if shot.name == name:
            return i
    return None


class ACT3_OT_print_spend(bpy.types.Operator):
    """Print the billing period's spend by tier and by day, the runway and the most expensive shots
    (what the Spend panel shows) as a table on the console; for blender -b"""

    bl_idname = "act3.print_spend"
    bl_label = "Print ACT3 Spend"

    refresh: BoolProperty(name="Refresh", description="Ask ACT3 first (in background mode, wait for it)")  # type: ignore[valid-type]
    wait: FloatProperty(name="Wait", description="Seconds to wait for ACT3 in background mode", default=10.0, min=0.0)  # type: ignore[valid-type]

    def execute(self, context):
        state = session.state()
        worker = session.worker_or_none()
        if worker is not None and bpy.app.online_access and (self.refresh or state.spend is None):
            ticket = session.request("spend")
            if bpy.app.background:  # no window to freeze; timers never fire in blender -b
                worker.wait(ticket, self.wait)
                if ticket.error is not None:
                    self.report({"WARNING"}, f"ACT3 spend: {ticket.error}")
        lines = draw.spend_table(state)
        print("\n".join(lines), flush=True)
        self.report({"INFO"}, lines[0])
        return {"FINISHED"}


class ACT3_OT_set_auto_top_up(bpy.types.Operator):
    """Buy a credit pack by itself when the available balance falls below a line, at most this much a
    billing period (the organisation's owner only)"""

    bl_idname = "act3.set_auto_top_up"
    bl_label = "Auto Top-Up"
    bl_options = {"INTERNAL"}

    enabled: BoolProperty(name="Enabled", default=True, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    below: IntProperty(name="Below (credits)", min=0, default=100_000, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    pack: EnumProperty(name="Pack", items=_pack_items, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    pack_id: StringProperty(name="Pack id", description="From a script: e.g. pack-250k", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    max_dollars: IntProperty(name="At most ($ a period)", min=0, default=950, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context):
        role = me.role if (me := session.state().me) is not None else ""
        if role != "owner":
            cls.poll_message_set("Only the organisation's owner can change auto top-up.")
            return False
        return True

    def invoke(self, context, event):
        state = session.state()
        if not state.packs:
            session.request("packs")
        current = state.auto_top_up or {}
        if current.get("below") is not None:
            self.enabled = bool(current.get("enabled"))
            self.below = int(current.get("below") or 0)
            self.max_dollars = int(current.get("max_per_period_cents") or 0) // 100
            try:
                self.pack = str(current.get("pack_id") or "")
            except TypeError:
                pass
        return context.window_manager.invoke_props_dialog(self, width=360, title="Auto Top-Up", confirm_text="Save")

    def draw(self, context):
        layout: Any = self.layout
        layout.prop(self, "enabled")
        col = layout.column()
        col.active = self.enabled
        col.prop(self, "below")
        col.prop(self, "pack")
        col.prop(self, "max_dollars")

    def execute(self, context):
        pack_id = self.pack_id or (self.pack if self.pack != "NONE" else "")
        if not pack_id:
            self.report({"ERROR"}, "The credit packs are still loading from ACT3: try again in a moment.")
            return {"CANCELLED"}
        worker = session.worker_or_none()
        if bpy.app.background and worker is None:
            self.report({"ERROR"}, session.NOT_RUNNING)
            return {"CANCELLED"}
        ticket = session.request(
            "set_auto_top_up",
            enabled=bool(self.enabled),
            below=int(self.below),
            pack_id=pack_id,
            max_per_period_cents=int(self.max_dollars) * 100,
        )
        if bpy.app.background and worker is not None:  # a script: wait for the answer, report it
            if not _answered(self, ticket, worker, "it may still be saved"):
                return {"CANCELLED"}
        self.report({"INFO"}, "Saving auto top-up…" if not bpy.app.background else "Auto top-up saved.")
        return {"FINISHED"}


classes = (
    ACT3_OT_set_auto_top_up,
    ACT3_OT_refresh,
    ACT3_OT_status,
    ACT3_OT_open_credits,
    ACT3_OT_test_connection,
    ACT3_OT_history_more,
    ACT3_OT_history_filter,
    ACT3_OT_export_history_csv,
    ACT3_OT_buy_credits,
    ACT3_OT_runway,
    ACT3_OT_select_shot,
    ACT3_OT_print_spend,
)
