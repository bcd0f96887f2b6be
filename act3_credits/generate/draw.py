"""What the Cost Estimate dialog, the Shots list and the Render Queue show.

Plain functions of `(layout, ...)` with no bpy import, so tests call them with a recording layout.
They read an `Estimate` (made from the cached rate card) or the `State`, never the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core import formatting, shots
from ..core.pricing import RateCard
from ..core.shots import Estimate, JobView, Line

ACTIVE_STATUSES = ("queued", "processing", "paused")
RECENT_ENDED_JOBS = 3  # ended jobs kept in the queue panel (older ones are in the history)
STATUS_ICONS = {
    "queued": "SORTTIME",
    "processing": "RENDER_ANIMATION",
    "paused": "PAUSE",
    "completed": "CHECKMARK",
    "failed": "ERROR",
    "canceled": "CANCEL",
}


def engine_name(card: RateCard, engine_id: str) -> str:
    try:
        return card.engine(engine_id).name
    except Exception:
        return engine_id or "?"


def tier_name(card: RateCard, tier_id: str) -> str:
    try:
        return card.tier(tier_id).name
    except Exception:
        return tier_id or "?"


def _pair(layout: Any, label: str, value: str, alert: bool = False) -> None:
    row = layout.row()
    split = row.split(factor=0.4)
    split.label(text=label)
    right = split.row()
    right.alert = alert
    right.label(text=value)


def card_note(card: RateCard, synced: bool) -> str:
    if synced:
        return f"Prices from the ACT3 rate card {card.version}, confirmed by the service on Confirm."
    return "Prices from the built-in rate card until the first sync; confirmed by the service on Confirm."


# ------------------------------------------------------------------------------------ estimate dialog


def draw_estimate_single(layout: Any, est: Estimate, card: RateCard, *, synced: bool = True, op: Any = None) -> None:
    """One shot: its name, engine, tier, duration and estimated credits, then the balance."""
    if not est.lines:
        layout.label(text="There is no shot to render.", icon="ERROR")
        return
    line = est.lines[0]
    col = layout.column()
    _pair(col, "Shot", line.name)
    _pair(col, "Engine", engine_name(card, line.shot.engine))
    _pair(col, "Quality", tier_name(card, line.shot.tier))
    _pair(col, "Duration", shots.duration_text(line.shot.duration_s, line.duration_s))
    _pair(col, "Estimated", formatting.credits(line.credits if line.duration_s is not None else None))
    _draw_footer(layout, est, card, synced=synced, op=op, batch=False)


def draw_estimate_batch(
    layout: Any,
    est: Estimate,
    card: RateCard,
    *,
    rows: Sequence[Any] = (),
    fitted_out: Sequence[bool] = (),
    synced: bool = True,
    op: Any = None,
) -> None:
    """A batch: one row per shot with a checkbox to leave it out, then the total and the balance.

    `rows` are the dialog's checkbox items (aligned with `est.lines`); `fitted_out` marks the shots
    that Fit to Budget leaves out.
    """
    if not est.lines:
        layout.label(text="No shots match this tag.", icon="ERROR")
        return
    header = layout.row()
    _cells(header, "Shot", "Engine", "Quality", "Duration", "Credits")
    col = layout.column(align=True)
    for i, line in enumerate(est.lines):
        row = col.row()
        row.active = line.sendable
        split = row.split(factor=0.3)
        if i < len(rows):
            split.prop(rows[i], "include", text=line.name)
        else:
            split.label(text=line.name)
        rest = split.split(factor=0.3)
        rest.label(text=engine_name(card, line.shot.engine))
        rest2 = rest.split(factor=0.35)
        rest2.label(text=tier_name(card, line.shot.tier))
        rest3 = rest2.split(factor=0.5)
        rest3.label(text=shots.duration_text(line.shot.duration_s, line.duration_s))
        rest3.label(text=formatting.credits(line.credits) if line.duration_s is not None else "—")
        if line.included and line.blocked_reason:
            sub = col.row()
            sub.alert = True
            sub.label(text=line.blocked_reason, icon="CANCEL")
        elif i < len(fitted_out) and fitted_out[i]:
            col.row().label(text=f"{line.name} is left out to fit the budget.", icon="INFO")
    layout.separator()
    count = len(est.sent)
    _pair(layout, "Total", f"{formatting.credits(est.total)} for {count} shot{'s' if count != 1 else ''}")
    _draw_footer(layout, est, card, synced=synced, op=op, batch=True)


def _cells(row: Any, *texts: str) -> None:
    split = row.split(factor=0.3)
    split.label(text=texts[0])
    rest = split.split(factor=0.3)
    rest.label(text=texts[1])
    rest2 = rest.split(factor=0.35)
    rest2.label(text=texts[2])
    rest3 = rest2.split(factor=0.5)
    rest3.label(text=texts[3])
    rest3.label(text=texts[4])


def _draw_footer(layout: Any, est: Estimate, card: RateCard, *, synced: bool, op: Any, batch: bool) -> None:
    layout.separator()
    col = layout.column()
    _pair(col, "Available", formatting.credits(est.available))
    after = est.balance_after
    _pair(col, "Balance after", formatting.credits(after), alert=after is not None and after < 0)
    draft = est.draft_text()
    if draft:
        layout.label(text=draft, icon="INFO")
    if op is not None and hasattr(op, "use_draft"):
        layout.prop(op, "use_draft", text="Switch to Draft", toggle=True, icon="SHADING_SOLID")
    if est.refusal:
        box = layout.box()
        box.alert = True
        box.label(text=est.refusal, icon="CANCEL")
        return
    if not batch and est.lines and est.lines[0].blocked_reason:
        box = layout.box()
        box.alert = True
        box.label(text=est.lines[0].blocked_reason, icon="CANCEL")
        return
    if est.shortfall > 0:
        box = layout.box()
        row = box.row()
        row.alert = True
        row.label(text=est.shortfall_text() or "", icon="ERROR")
        row = box.row(align=True)
        if batch and op is not None and hasattr(op, "fit_to_budget"):
            row.prop(op, "fit_to_budget", text="Fit to Budget", toggle=True, icon="SORTSIZE")
        row.operator("act3.buy_credits", text="Buy Credits", icon="ADD")
        box.label(text="Confirm sends nothing until the balance covers it.")
    elif not est.sent:
        row = layout.row()
        row.alert = True
        row.label(text=est.why_not() or "", icon="CANCEL")
    layout.label(text=card_note(card, synced))


# ------------------------------------------------------------------------------------ shots list


def shot_row_texts(line: Line, card: RateCard) -> tuple[str, str, str, str]:
    """(tier, engine, snapped duration, estimated credits) as a Shots list row reads them."""
    duration = shots.duration_text(line.shot.duration_s, line.duration_s)
    cost = formatting.credits(line.credits) if line.duration_s is not None else "—"
    return tier_name(card, line.shot.tier), engine_name(card, line.shot.engine), duration, cost


def draw_shot_row(layout: Any, item: Any, line: Line, card: RateCard) -> None:
    """One row of the Shots list: select box, name, tier, engine, duration and estimate."""
    tier, engine, duration, cost = shot_row_texts(line, card)
    row = layout.row(align=True)
    row.prop(item, "select", text="")
    split = row.split(factor=0.34)
    split.label(text=line.name, icon="LOCKED" if line.shot.locked else "SEQUENCE")
    rest = split.split(factor=0.25)
    rest.label(text=tier)
    rest2 = rest.split(factor=0.45)
    rest2.label(text=engine)
    rest3 = rest2.split(factor=0.4)
    rest3.label(text=duration)
    rest3.label(text=cost)


# ------------------------------------------------------------------------------------ render queue


def visible_jobs(jobs: dict[int, dict[str, Any]]) -> list[JobView]:
    """Every job still running or paused, and the few that ended most recently, newest first."""
    views = shots.jobs_newest_first(jobs)
    active = [v for v in views if not v.ended]
    ended = [v for v in views if v.ended][:RECENT_ENDED_JOBS]
    return sorted(active + ended, key=lambda v: -v.id)


def draw_render_queue(layout: Any, state: Any, card: RateCard, guard_reasons: dict[int, str] | None = None) -> None:
    """Each job with its status, a progress bar, and per shot its status and cost; Pause/Resume/Cancel."""
    jobs = getattr(state, "jobs", {}) or {}
    views = visible_jobs(jobs)
    if not views:
        layout.label(text="No ACT3 jobs yet: Generate a shot or a batch.", icon="INFO")
        return
    for view in views:
        reason = (guard_reasons or {}).get(view.id) or jobs.get(view.id, {}).get("status_reason")
        draw_job(layout, view, card, reason)


def draw_job(layout: Any, view: JobView, card: RateCard, reason: str | None = None) -> None:
    box = layout.box()
    head = box.row(align=True)
    head.label(text=f"{view.name}", icon=STATUS_ICONS.get(view.status, "QUESTION"))
    head.label(text=view.status.capitalize())
    if view.status in ("queued", "processing"):
        op = head.operator("act3.job_pause", text="", icon="PAUSE")
        op.job_id = view.id
    if view.status == "paused":
        op = head.operator("act3.job_resume", text="", icon="PLAY")
        op.job_id = view.id
    if not view.ended:
        op = head.operator("act3.job_cancel", text="", icon="X")
        op.job_id = view.id
    if reason and view.status == "paused":
        row = box.row()
        row.alert = True
        row.label(text=str(reason), icon="INFO")
    box.progress(factor=view.progress, type="BAR", text=view.progress_text())
    col = box.column(align=True)
    for index, shot in enumerate(view.shots):
        row = col.row(align=True)
        status = str(shot.get("status") or "queued")
        row.alert = status == "failed"
        row.label(text=str(shot.get("name") or f"shot {index + 1}"), icon=STATUS_ICONS.get(status, "DOT"))
        row.label(text=f"{tier_name(card, str(shot.get('tier') or ''))} · {shot.get('duration_s', '?')} s")
        row.label(text=shots.shot_status_text(shot))
        if status == "failed":
            op = row.operator("act3.retry_shot", text="Retry", icon="FILE_REFRESH")
            op.job_id = view.id
            op.shot_index = index


# ------------------------------------------------------------------------------------ panels


def draw_shots_panel(layout: Any, scene: Any, settings: Any, est: Estimate | None) -> None:
    """The Shots sub-panel: the list (filtered by tag), the active shot's settings, Generate buttons.

    `est` is the estimate of the shots the tag filter shows (for the batch button).
    """
    row = layout.row(align=True)
    row.operator("act3.shots_from_markers", text="From Camera Markers", icon="MARKER_HLT")
    row.operator("act3.shot_add", text="", icon="ADD")
    row.operator("act3.shot_remove", text="", icon="REMOVE")
    layout.prop(settings, "tag_filter", text="", icon="VIEWZOOM")
    layout.template_list("ACT3_UL_shots", "", scene, "act3_shots", scene, "act3_shots_index", rows=5)
    items = scene.act3_shots
    if len(items) == 0:
        layout.label(text=f"No shots: the whole scene is one shot ({scene.name}).", icon="INFO")
    elif 0 <= scene.act3_shots_index < len(items):
        item = items[scene.act3_shots_index]
        col = layout.column(align=True)
        col.prop(item, "name")
        sub = col.row(align=True)
        sub.prop(item, "frame_start")
        sub.prop(item, "frame_end")
        col.prop(item, "camera")
        col.prop(item, "engine")
        col.prop(item, "tier")
        col.prop(item, "tags")
        col.prop(item, "locked")
        if item.last_job_id:
            col.label(text=f"Last job {item.last_job_id}: {formatting.credits(item.last_cost)}")
    tag_row = layout.row(align=True)
    tag_row.operator("act3.tag_shots", text="Tag Selected", icon="BOOKMARKS")
    op = tag_row.operator("act3.fit_to_budget", text="Select What Fits", icon="SORTSIZE")
    op.tag = settings.tag_filter
    op = tag_row.operator("act3.switch_to_draft", text="All Draft", icon="SHADING_SOLID")
    op.tag = settings.tag_filter
    row = layout.row(align=True)
    row.scale_y = 1.3
    row.operator("act3.generate", text="Generate Shot", icon="RENDER_STILL")
    total = f" · {formatting.credits(est.total)}" if est is not None and est.sent else ""
    label = f"Generate #{settings.tag_filter.strip()}" if shots.parse_tags(settings.tag_filter) else "Generate All"
    op = row.operator("act3.generate_batch", text=f"{label}{total}", icon="RENDER_ANIMATION")
    op.tag = settings.tag_filter


def draw_generate_settings(layout: Any, settings: Any, problems: Sequence[str] = ()) -> None:
    """The budget guard and the guarded operators (for the preferences or a sub-panel).

    `problems` says which guarded operators are not guarded, so a typo never passes for protection.
    """
    col = layout.column()
    col.prop(settings, "guard_enabled")
    sub = col.column()
    sub.active = bool(settings.guard_enabled)
    sub.prop(settings, "guard_min_balance")
    sub.prop(settings, "guard_pause_over_estimate")
    col.separator()
    col.label(text="Show the cost estimate before these operators run:")
    col.prop(settings, "intercept_ops", text="")
    for line in problems:
        row = col.row()
        row.alert = True
        row.label(text=line, icon="ERROR")
