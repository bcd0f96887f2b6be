"""GENERATE operators: shots from markers, tagging, the Cost Estimate dialog, the render queue.

Invoked from the UI, `act3.generate` and `act3.generate_batch` open the Cost Estimate dialog (numbers
from the cached rate card, at once) and Confirm hands the job to the worker thread. Run from Python
(`execute()`), they skip the dialog; in `blender -b` they wait for the service's answer (blocking
only the script) so the report line says what happened. Errors are one readable report line.
"""

from __future__ import annotations

import json
from typing import Any

import bpy
from bpy.props import BoolProperty, CollectionProperty, IntProperty, StringProperty

from .. import session
from ..core import formatting, limits, shots, submission
from ..core.contract import Job, JobShot
from ..core.logs import log
from ..core.shots import Account, Estimate, Shot
from ..core.sync import SyncWorker, Ticket
from ..core.vocabulary import NAME_MAX_CHARS, Status
from . import draw, intercept, jobs, props

SCRIPT_WAIT_S = 60.0  # how long a script's call waits for the service in `blender -b`

# Confirmations whose answer was lost keep their key: confirming the same shots again replays the job.
keys = submission.KeyBook()


def worker_or_none() -> SyncWorker | None:
    return session.worker_or_none()


def account() -> Account:
    return Account.from_state(session.state())


def synced() -> bool:
    return session.state().rate_card is not None


def notify(message: str, level: str = "INFO") -> None:
    """Tell the artist outside an operator (a callback in drain): the timer shows it in the status bar."""
    session.state().say(message, level)
    log.info("ACT3: %s", message)
    if bpy.app.background:
        print(f"ACT3: {message}")


LONG_JOB_NAME = f"The job name is over {NAME_MAX_CHARS} characters, the most ACT3 takes: shorten it."


def job_name(typed: str, default: str) -> str | None:
    """The name a job is sent with: the one typed (None when ACT3 would refuse it as too long), or
    the default made from the shots, cut to fit (a 200-character shot's 'retry' would not)."""
    if typed:
        return typed if len(typed) <= NAME_MAX_CHARS else None
    return default[:NAME_MAX_CHARS]


def one_line(exc: BaseException) -> str:
    return formatting.one_line(exc, None) or type(exc).__name__


class ACT3_OT_report(bpy.types.Operator):
    """Show a message from ACT3 in the status bar"""

    bl_idname = "act3.report"
    bl_label = "ACT3 Message"
    bl_options = {"INTERNAL"}

    message: StringProperty()  # type: ignore[valid-type]
    level: StringProperty(default="INFO")  # type: ignore[valid-type]

    def execute(self, context):
        self.report({self.level if self.level in ("INFO", "WARNING", "ERROR") else "INFO"}, self.message)
        return {"FINISHED"}


# ---------------------------------------------------------------------------------------- shots


class ACT3_OT_shots_from_markers(bpy.types.Operator):
    """Make the shot list from the timeline's camera markers: each marker bound to a camera starts a shot.
    Shots found again keep their tags, quality tier and engine"""

    bl_idname = "act3.shots_from_markers"
    bl_label = "Shots from Camera Markers"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None

    def execute(self, context):
        scene = context.scene
        markers = [shots.Marker(m.name, m.frame, m.camera.name if m.camera else None) for m in scene.timeline_markers]
        ranges = shots.shots_from_markers(markers, scene.frame_start, scene.frame_end)
        if not ranges:
            self.report(
                {"WARNING"},
                "No timeline marker is bound to a camera: select a camera and a marker and bind them "
                "(Marker > Bind Camera to Markers, Ctrl+B).",
            )
            return {"CANCELLED"}
        existing = scene.act3_shots
        kept = [
            {
                "engine": it.engine,
                "tier": it.tier,
                "tags": it.tags,
                "locked": it.locked,
                "select": it.select,
                "last_job_id": it.last_job_id,
                "last_cost": it.last_cost,
            }
            for it in existing
        ]
        matches = shots.match_existing(ranges, [(it.name, it.frame_start) for it in existing])
        existing.clear()
        for rng, match in zip(ranges, matches, strict=True):
            item = existing.add()
            item.name = rng.name
            item.frame_start, item.frame_end = rng.frame_start, rng.frame_end
            item.camera = bpy.data.objects.get(rng.camera) if rng.camera else None
            if match is not None:
                for key, value in kept[match].items():
                    if key == "engine" and not value:
                        continue  # an engine the rate card no longer has: keep the default
                    setattr(item, key, value)
        scene.act3_shots_index = min(scene.act3_shots_index, len(existing) - 1)
        updated = sum(1 for m in matches if m is not None)
        removed = len(kept) - updated
        self.report(
            {"INFO"},
            f"{len(ranges)} shots from camera markers ({updated} kept their settings, "
            f"{len(ranges) - updated} new, {removed} removed).",
        )
        return {"FINISHED"}


class ACT3_OT_shot_add(bpy.types.Operator):
    """Add a shot covering the scene's frame range"""

    bl_idname = "act3.shot_add"
    bl_label = "Add Shot"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        item = scene.act3_shots.add()
        item.name = f"sh{len(scene.act3_shots) * 10:03d}"
        item.frame_start, item.frame_end = scene.frame_start, scene.frame_end
        item.camera = scene.camera
        scene.act3_shots_index = len(scene.act3_shots) - 1
        return {"FINISHED"}


class ACT3_OT_shot_remove(bpy.types.Operator):
    """Remove the active shot from the list"""

    bl_idname = "act3.shot_remove"
    bl_label = "Remove Shot"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: Any) -> bool:
        return context.scene is not None and len(context.scene.act3_shots) > 0

    def execute(self, context):
        scene = context.scene
        index = scene.act3_shots_index
        if not 0 <= index < len(scene.act3_shots):
            self.report({"WARNING"}, "No shot is selected in the list: nothing was removed.")
            return {"CANCELLED"}
        scene.act3_shots.remove(index)
        scene.act3_shots_index = max(0, min(index, len(scene.act3_shots) - 1))
        return {"FINISHED"}


class ACT3_OT_tag_shots(bpy.types.Operator):
    """Add (or remove) tags on every selected shot at once"""

    bl_idname = "act3.tag_shots"
    bl_label = "Tag Selected Shots"
    bl_options = {"REGISTER", "UNDO"}

    tag: StringProperty(name="Tags", description="Tags to add, comma separated")  # type: ignore[valid-type]
    remove: BoolProperty(name="Remove", description="Remove these tags instead of adding them")  # type: ignore[valid-type]

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        if not shots.parse_tags(self.tag):
            self.report({"WARNING"}, "Type a tag first (several: comma separated).")
            return {"CANCELLED"}
        chosen = [it for it in context.scene.act3_shots if it.select]
        if not chosen:
            self.report({"WARNING"}, "No shot is selected: tick the box in front of each shot to tag.")
            return {"CANCELLED"}
        for it in chosen:
            it.tags = shots.remove_tags(it.tags, self.tag) if self.remove else shots.add_tags(it.tags, self.tag)
        verb = "Removed" if self.remove else "Added"
        self.report({"INFO"}, f"{verb} '{shots.join_tags(shots.parse_tags(self.tag))}' on {len(chosen)} shots.")
        return {"FINISHED"}


class ACT3_OT_switch_to_draft(bpy.types.Operator):
    """Set the Draft quality tier on the shots with this tag (a cheap first pass)"""

    bl_idname = "act3.switch_to_draft"
    bl_label = "Switch to Draft"
    bl_options = {"REGISTER", "UNDO"}

    tag: StringProperty(name="Tag")  # type: ignore[valid-type]

    def execute(self, context):
        items = [it for it in context.scene.act3_shots if shots.matches_tag(it.tags, self.tag) and not it.locked]
        for it in items:
            it.tier = shots.DRAFT_TIER
        self.report({"INFO"}, f"{len(items)} shots set to Draft.")
        return {"FINISHED"}


class ACT3_OT_fit_to_budget(bpy.types.Operator):
    """Select only the shots with this tag that fit the available balance, highest priority (list order) first"""

    bl_idname = "act3.fit_to_budget"
    bl_label = "Fit to Budget"
    bl_options = {"REGISTER", "UNDO"}

    tag: StringProperty(name="Tag")  # type: ignore[valid-type]

    def execute(self, context):
        scene = context.scene
        items = [it for it in scene.act3_shots if shots.matches_tag(it.tags, self.tag)]
        est = shots.estimate([props.to_shot(scene, it) for it in items], props.rate_card(), account())
        if est.available is None:
            self.report({"WARNING"}, "The balance is not known yet: wait for ACT3 to sync.")
            return {"CANCELLED"}
        keep = set(est.fit_to_budget())
        for it in scene.act3_shots:
            it.select = False
        for i, it in enumerate(items):
            it.select = i in keep
        total = sum(est.lines[i].credits for i in keep)
        self.report(
            {"INFO"},
            f"Selected {len(keep)} of {len(items)} shots: {formatting.credits(total)} of "
            f"{formatting.credits(est.available)} available.",
        )
        return {"FINISHED"}


# ---------------------------------------------------------------------------------------- generate


class _CostEstimate(bpy.types.Operator):
    """Shared by Generate, Generate Batch and Retry: the dialog, and Confirm."""

    # Not REGISTER: Repeat Last (Shift+R) would replay the last Confirm with its idempotency key.
    bl_options = {"INTERNAL"}
    dialog_width = 420
    batch = False

    force: BoolProperty(  # type: ignore[valid-type]
        name="Force",
        description="From a script: send even when the balance does not cover it, and let the service decide",
        options={"SKIP_SAVE"},
    )
    use_draft: BoolProperty(  # type: ignore[valid-type]
        name="Switch to Draft",
        description="Render these shots at the Draft tier (the same shots cost less)",
        options={"SKIP_SAVE"},
    )
    idempotency_key: StringProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    from_dialog: BoolProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    then_call: StringProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    then_token: StringProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    job_name: StringProperty(name="Job Name", description="Name of the ACT3 job (default: from the shots)")  # type: ignore[valid-type]

    # ------------------------------------------------------------------ what is estimated

    def shot_list(self, context: Any) -> list[Shot]:
        raise NotImplementedError

    def default_name(self, context: Any, chosen: list[Shot]) -> str:
        raise NotImplementedError

    def included(self) -> list[bool] | None:
        return None

    def estimate(self, context: Any) -> tuple[Estimate, list[bool]]:
        """The estimate Confirm sends, and which lines Fit to Budget left out."""
        chosen = self.shot_list(context)
        if self.use_draft:
            chosen = shots.switch_to_draft(chosen)
        est = shots.estimate(chosen, props.rate_card(), account(), self.included())
        return est, [False] * len(est.lines)

    def budget_limits(self, context: Any, est: Estimate) -> limits.Limits:
        return limits_for(context.scene, [ln.credits for ln in est.sent])

    # ------------------------------------------------------------------ dialog

    def invoke(self, context, event):
        try:
            self.prepare(context)
            est, _ = self.estimate(context)
        except Exception as exc:
            log.exception("ACT3: estimate")
            self.report({"ERROR"}, one_line(exc))
            return {"CANCELLED"}
        if not est.lines:
            self.report({"WARNING"}, self.nothing_message())
            return {"CANCELLED"}
        worker = worker_or_none()
        if worker is not None and not bpy.app.background:
            worker.request("credits")  # fresh balance while the artist reads the dialog
            worker.request("budgets")  # and the project's budget, and the member's cap
            worker.request("me")
        self.from_dialog = True
        title = "Cost Estimate"
        return context.window_manager.invoke_props_dialog(
            self, width=self.dialog_width, title=title, confirm_text="Confirm"
        )

    def prepare(self, context: Any) -> None:
        """Before the dialog opens (rows of a batch)."""

    def nothing_message(self) -> str:
        return "There is no shot to render."

    def draw(self, context):
        est, fitted_out = self.estimate(context)
        layout: Any = self.layout
        if self.then_call:
            layout.label(text=f"Confirm runs {self.then_call} after this estimate.", icon="INFO")
        self.draw_estimate(context, layout, est, fitted_out, self.budget_limits(context, est))

    def draw_estimate(
        self, context: Any, layout: Any, est: Estimate, fitted_out: list[bool], lim: limits.Limits
    ) -> None:
        draw.draw_estimate_single(
            layout, est, props.rate_card(), synced=synced(), op=self, limits=lim, billing_date=billing_date()
        )

    # ------------------------------------------------------------------ confirm

    def execute(self, context):
        try:
            return self.confirm(context)
        except Exception as exc:  # one readable line, never a traceback in the artist's face
            log.exception("ACT3: generate")
            self.report({"ERROR"}, one_line(exc))
            return {"CANCELLED"}

    def confirm(self, context):
        est, _ = self.estimate(context)
        if not est.lines:
            self.report({"ERROR"}, self.nothing_message())
            return {"CANCELLED"}
        why = est.why_not()
        if why and not (self.force and est.shortfall > 0 and est.refusal is None and est.sent):
            self.report({"ERROR"}, f"{why} Nothing was sent.")
            return {"CANCELLED"}
        if not self.batch and est.blocked:
            self.report({"ERROR"}, f"{est.blocked[0].blocked_reason} Nothing was sent.")
            return {"CANCELLED"}
        lim = self.budget_limits(context, est)
        if lim.refused:
            self.report({"ERROR"}, f"{lim.message} {submission.NOTHING_SENT}")
            return {"CANCELLED"}
        if self.then_call:
            return self.run_intercepted()
        worker = worker_or_none()
        if worker is None:
            self.report({"ERROR"}, session.NOT_RUNNING)
            return {"CANCELLED"}
        chosen = [ln.shot for ln in est.sent]
        name = job_name(self.job_name, self.default_name(context, chosen))
        if name is None:
            self.report({"ERROR"}, f"{LONG_JOB_NAME} Nothing was sent.")
            return {"CANCELLED"}
        body = est.request_shots()
        if not self.idempotency_key:
            self.idempotency_key = keys.key_for(name, body)
        sending = submission.Submission(
            worker,
            name=name,
            shots_json=body,
            idempotency_key=self.idempotency_key,
            force=self.force,
            # What the dialog showed must be what the service holds; a script has no dialog to disagree with.
            shown_total=est.total if self.from_dialog else None,
            on_done=_submitted(context.scene.name, est.total, [ln.name for ln in est.sent]),
            project=lim.project,
        ).start()
        if est.blocked:
            left = ", ".join(ln.name for ln in est.blocked)
            self.report({"WARNING"}, f"Left out (cannot be rendered): {left}.")
        if not bpy.app.background:
            self.report({"INFO"}, f"Sending {name} to ACT3: {formatting.credits(est.total)}…")
            return {"FINISHED"}
        # A script in `blender -b`: no timer drains the worker, so wait here for the answer.
        if not sending.wait(SCRIPT_WAIT_S):
            self.report({"ERROR"}, f"No answer from ACT3 within {SCRIPT_WAIT_S:g} s; {name} may still be sent.")
            return {"CANCELLED"}
        if not sending.ok:
            self.report({"ERROR"}, sending.message)
            return {"CANCELLED"}
        self.report({"INFO"}, sending.message)
        return {"FINISHED"}

    def run_intercepted(self):
        ok, message = intercept.run_original(self.then_call, self.then_token)
        self.report({"INFO" if ok else "ERROR"}, message)
        return {"FINISHED"} if ok else {"CANCELLED"}


def _submitted(scene_name: str, total: int, shot_names: list[str]) -> Any:
    """After the service answers a confirmation (main thread)."""

    def done(sub: submission.Submission) -> None:
        keys.settle(sub)
        if sub.ok and sub.job is not None:
            job_id = sub.job.id
            jobs.guard.attach(sub.worker)
            jobs.guard.watch(job_id, total)
            scene = bpy.data.scenes.get(scene_name)
            if scene is not None:
                for item in scene.act3_shots:
                    if item.name in shot_names:
                        item.last_job_id = job_id
        if not bpy.app.background:
            notify(sub.message, "INFO" if sub.ok else "WARNING")

    return done


class ACT3_OT_generate(_CostEstimate):
    """Render the active shot with ACT3. The Cost Estimate shows what it will cost before anything is sent"""

    bl_idname = "act3.generate"
    bl_label = "Generate Shot"

    shot: StringProperty(name="Shot", description="The shot to render (default: the active one)")  # type: ignore[valid-type]

    def shot_list(self, context: Any) -> list[Shot]:
        found = props.active_shot(context.scene, self.shot)
        return [found] if found is not None else []

    def default_name(self, context: Any, chosen: list[Shot]) -> str:
        return chosen[0].name if chosen else context.scene.name

    def nothing_message(self) -> str:
        if not self.shot:
            return "There is no shot to render."
        return f"There is no shot named {formatting.one_line(repr(self.shot))} in this scene."


class _Batch(_CostEstimate):
    """Shared by Generate Batch and Upgrade Approved (a registered operator class is never subclassed)."""

    dialog_width = 620
    batch = True

    tag: StringProperty(name="Tag", description="Render the shots that carry these tags (empty: every shot)")  # type: ignore[valid-type]
    selected_only: BoolProperty(name="Selected Only", description="Only the shots ticked in the list")  # type: ignore[valid-type]
    fit_to_budget: BoolProperty(  # type: ignore[valid-type]
        name="Fit to Budget",
        description="Keep the highest-priority shots, in the list's order, that fit the available balance",
        options={"SKIP_SAVE"},
    )
    rows: CollectionProperty(type=props.ACT3_PG_estimate_row, options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]

    def shot_list(self, context: Any) -> list[Shot]:
        found = props.tagged_shots(context.scene, self.tag)
        if self.selected_only:
            chosen = {it.name for it in context.scene.act3_shots if it.select}
            found = [s for s in found if s.name in chosen]
        return found

    def default_name(self, context: Any, chosen: list[Shot]) -> str:
        what = f"#{self.tag}" if shots.parse_tags(self.tag) else "batch"
        return f"{context.scene.name} {what} ({len(chosen)} shots)"

    def nothing_message(self) -> str:
        if shots.parse_tags(self.tag):
            return f"No shot carries the tag {self.tag!r}."
        return "There are no shots to render."

    def prepare(self, context: Any) -> None:
        self.rows.clear()
        for s in self.shot_list(context):
            row = self.rows.add()
            row.name = s.name
            row.include = True

    def included(self) -> list[bool] | None:
        if len(self.rows) == 0:
            return None
        return [row.include for row in self.rows]

    def estimate(self, context: Any) -> tuple[Estimate, list[bool]]:
        chosen = self.shot_list(context)
        if len(self.rows) != len(chosen) or any(r.name != s.name for r, s in zip(self.rows, chosen, strict=False)):
            self.rows.clear()  # the list changed under the dialog: start from every shot
        if self.use_draft:
            chosen = shots.switch_to_draft(chosen)
        est = shots.estimate(chosen, props.rate_card(), account(), self.included())
        fitted_out = [False] * len(est.lines)
        if self.fit_to_budget and est.available is not None and est.shortfall > 0:
            keep = set(est.fit_to_budget())
            fitted_out = [ln.sendable and i not in keep for i, ln in enumerate(est.lines)]
            est = est.with_included([ln.included and not out for ln, out in zip(est.lines, fitted_out, strict=True)])
        return est, fitted_out

    def draw_estimate(
        self, context: Any, layout: Any, est: Estimate, fitted_out: list[bool], lim: limits.Limits
    ) -> None:
        rows = list(self.rows) if len(self.rows) == len(est.lines) else []
        draw.draw_estimate_batch(
            layout,
            est,
            props.rate_card(),
            rows=rows,
            fitted_out=fitted_out,
            synced=synced(),
            op=self,
            limits=lim,
            billing_date=billing_date(),
            saving=self.saving(context),
        )

    def saving(self, context: Any) -> limits.DraftSaving | None:
        return None


class ACT3_OT_generate_batch(_Batch):
    """Render every shot that carries the tag in the filter (all shots when it is empty). The Cost Estimate lists each shot's cost first; untick shots to leave them out"""

    bl_idname = "act3.generate_batch"
    bl_label = "Generate Batch"


class ACT3_OT_upgrade_approved(_Batch):
    """Render the approved shots again at their final tier (High unless set per shot). The Cost Estimate
    shows what rendering Draft first saved against every shot at its final tier from the start"""

    bl_idname = "act3.upgrade_approved"
    bl_label = "Upgrade Approved"

    def shot_list(self, context: Any) -> list[Shot]:
        return props.approved_shots(context.scene)

    def default_name(self, context: Any, chosen: list[Shot]) -> str:
        return f"{context.scene.name} upgrade ({len(chosen)} shots)"

    def nothing_message(self) -> str:
        return "No shot is approved: tick Approved on the shots to render at their final tier."

    def saving(self, context: Any) -> limits.DraftSaving | None:
        drafted = props.drafted_shots(context.scene)
        return limits.draft_first_saving(props.rate_card(), drafted) if drafted else None


class ACT3_OT_defer_shots(bpy.types.Operator):
    """Send these shots to start at the next refill: the job holds nothing now, the refill holds and starts it"""

    bl_idname = "act3.defer_shots"
    bl_label = "Defer to Next Period"
    bl_options = {"INTERNAL"}

    shots_json: StringProperty(options={"HIDDEN", "SKIP_SAVE"})  # type: ignore[valid-type]
    job_name: StringProperty(name="Job Name", options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context):
        try:
            given = json.loads(self.shots_json or "[]")
        except (ValueError, RecursionError):  # not JSON, or nested too deep
            given = None
        if not isinstance(given, list) or not all(isinstance(s, dict) for s in given):
            self.report({"ERROR"}, "The shots to defer are not a list of shot objects; nothing was sent.")
            return {"CANCELLED"}
        body = given
        if not body:
            self.report({"WARNING"}, "Nothing to defer: every shot fits now.")
            return {"CANCELLED"}
        worker = worker_or_none()
        if worker is None:
            self.report({"ERROR"}, session.NOT_RUNNING)
            return {"CANCELLED"}
        name = job_name(self.job_name, f"{context.scene.name} deferred")
        if name is None:
            self.report({"ERROR"}, f"{LONG_JOB_NAME} Nothing was sent.")
            return {"CANCELLED"}
        when = formatting.day_month(billing_date()) or "the next refill"
        sending = submission.Submission(
            worker,
            name=name,
            shots_json=body,
            idempotency_key=keys.key_for(name, body),
            on_done=_deferred(),
            project=props.project_for(context.scene),
            start="next_period",
        ).start()
        if not bpy.app.background:
            self.report({"INFO"}, f"Deferring {len(body)} shots to {when}…")
            return {"FINISHED"}
        if not sending.wait(SCRIPT_WAIT_S):
            self.report({"ERROR"}, f"No answer from ACT3 within {SCRIPT_WAIT_S:g} s; {name} may still be sent.")
            return {"CANCELLED"}
        self.report({"INFO"} if sending.ok else {"ERROR"}, sending.message)
        return {"FINISHED"} if sending.ok else {"CANCELLED"}


def _deferred() -> Any:
    def done(sub: submission.Submission) -> None:
        keys.settle(sub)
        if not bpy.app.background:
            notify(sub.message, "INFO" if sub.ok else "WARNING")

    return done


class ACT3_OT_retry_shot(_CostEstimate):
    """Render a failed shot again, as a new one-shot job with a new estimate (a failed shot was not charged)"""

    bl_idname = "act3.retry_shot"
    bl_label = "Retry Shot"

    job_id: IntProperty(name="Job")  # type: ignore[valid-type]
    shot_index: IntProperty(name="Shot")  # type: ignore[valid-type]

    def failed_shot(self) -> JobShot | None:
        job = session.state().jobs.get(self.job_id)
        shots_ = job.shots if job is not None else ()
        found = shots_[self.shot_index] if 0 <= self.shot_index < len(shots_) else None
        # Only a failed shot is retried (it was never charged); a script must not re-render the others.
        return found if found is not None and found.status == Status.FAILED else None

    def shot_list(self, context: Any) -> list[Shot]:
        s = self.failed_shot()
        if s is None:
            return []
        requested = s.requested_duration_s or s.duration_s
        return [Shot(s.name, s.engine, s.tier, float(requested))]

    def default_name(self, context: Any, chosen: list[Shot]) -> str:
        return f"{chosen[0].name} retry" if chosen else "retry"

    def nothing_message(self) -> str:
        return f"Job {self.job_id} has no failed shot {self.shot_index + 1} to retry."


# ---------------------------------------------------------------------------------------- queue


class _JobAction(bpy.types.Operator):
    bl_options = {"REGISTER", "INTERNAL"}
    kind = ""
    verb = ""

    job_id: IntProperty(name="Job")  # type: ignore[valid-type]

    def execute(self, context):
        worker = worker_or_none()
        if worker is None:
            self.report({"ERROR"}, session.NOT_RUNNING)
            return {"CANCELLED"}
        if self.kind == "resume_job":
            jobs.guard.resumed(self.job_id)
        verb = self.verb
        job_id = self.job_id

        def done(ticket: Ticket) -> None:
            if not bpy.app.background:
                if ticket.ok:
                    notify(f"Job {job_id} {verb}.")
                else:
                    notify(str(ticket.error), "WARNING")

        ticket = worker.request(self.kind, job_id=job_id, callback=done)
        if not bpy.app.background:
            return {"FINISHED"}
        if not worker.wait(ticket, SCRIPT_WAIT_S):
            self.report({"ERROR"}, f"No answer from ACT3 within {SCRIPT_WAIT_S:g} s.")
            return {"CANCELLED"}
        if not ticket.ok:
            self.report({"ERROR"}, str(ticket.error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Job {job_id} {verb}.")
        return {"FINISHED"}


class ACT3_OT_job_pause(_JobAction):
    """Pause the job: a shot already rendering finishes (and is charged), then it stops"""

    bl_idname = "act3.job_pause"
    bl_label = "Pause Job"
    kind, verb = "pause_job", "paused"


class ACT3_OT_job_resume(_JobAction):
    """Resume a paused job"""

    bl_idname = "act3.job_resume"
    bl_label = "Resume Job"
    kind, verb = "resume_job", "resumed"


class ACT3_OT_job_cancel(_JobAction):
    """Cancel the job now: a shot rendering is not charged and everything still held is released"""

    bl_idname = "act3.job_cancel"
    bl_label = "Cancel Job"
    kind, verb = "cancel_job", "canceled"


# Jobs whose shots the Render Queue lists (a job folds to its summary otherwise); for this session.
expanded_jobs: set[int] = set()


class ACT3_OT_job_toggle_shots(bpy.types.Operator):
    """Show or hide this job's shots"""

    bl_idname = "act3.job_toggle_shots"
    bl_label = "Show Shots"
    bl_options = {"INTERNAL"}

    job_id: IntProperty(name="Job")  # type: ignore[valid-type]

    def execute(self, context):
        if self.job_id in expanded_jobs:
            expanded_jobs.discard(self.job_id)
        else:
            expanded_jobs.add(self.job_id)
        if context.area is not None:
            context.area.tag_redraw()
        return {"FINISHED"}


class ACT3_OT_jobs_refresh(bpy.types.Operator):
    """Fetch the organisation's recent ACT3 jobs"""

    bl_idname = "act3.jobs_refresh"
    bl_label = "Refresh Jobs"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        worker = worker_or_none()
        if worker is None:
            self.report({"ERROR"}, session.NOT_RUNNING)
            return {"CANCELLED"}
        worker.request("jobs", limit=20)
        return {"FINISHED"}


classes = (
    ACT3_OT_report,
    ACT3_OT_shots_from_markers,
    ACT3_OT_shot_add,
    ACT3_OT_shot_remove,
    ACT3_OT_tag_shots,
    ACT3_OT_switch_to_draft,
    ACT3_OT_fit_to_budget,
    ACT3_OT_generate,
    ACT3_OT_generate_batch,
    ACT3_OT_upgrade_approved,
    ACT3_OT_defer_shots,
    ACT3_OT_retry_shot,
    ACT3_OT_job_pause,
    ACT3_OT_job_resume,
    ACT3_OT_job_cancel,
    ACT3_OT_job_toggle_shots,
    ACT3_OT_jobs_refresh,
)


def record_shot_cost(job_id: int, shot_name: str, credits: int) -> None:
    """A shot completed: its cost and tier go on the shot in the .blend (main thread, from drain)."""
    tier = sent_tier(session.state().jobs.get(job_id), shot_name)
    for scene in bpy.data.scenes:
        for item in getattr(scene, "act3_shots", ()):
            if item.name == shot_name and item.last_job_id == job_id:
                item.last_cost = credits
                if tier:
                    item.last_tier = tier


def sent_tier(job: Job | None, shot_name: str) -> str:
    """The tier a shot of this job was rendered at ('' when the job is not known here)."""
    for shot in job.shots if job is not None else ():
        if shot.name == shot_name:
            return shot.tier
    return ""


def billing_date() -> str:
    credits = session.state().credits
    return credits.billing_date if credits is not None else ""


def limits_for(scene: Any, shot_credits: list[int]) -> limits.Limits:
    """The scene's project budget and the member's cap against these shots (cached, no network)."""
    state = session.state()
    project = props.project_for(scene)
    budget = limits.budgets_by_project(state.budgets).get(project)
    return limits.assess(project, budget, limits.MemberCap.from_me(state.me), shot_credits)


def guard_settings() -> tuple[bool, int, bool]:
    s = props.settings(bpy.context)
    return bool(s.guard_enabled), int(s.guard_min_balance), bool(s.guard_pause_over_estimate)
