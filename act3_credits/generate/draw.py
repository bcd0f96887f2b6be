"""What the Cost Estimate dialog, the Shots list and the Render Queue show.

Plain functions of `(layout, ...)` with no bpy import, so tests call them with a recording layout.
They read an `Estimate` (made from the cached rate card) or the `State`, never the network.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ..core import formatting, shots
from ..core.contract import Job
from ..core.pricing import RateCard
from ..core.shots import Estimate, JobView, Line
from ..core.vocabulary import ENDED, RUNNING, Status
from ..widgets import DEFAULT_SIDEBAR, engine_name, is_wide, tier_name  # one width rule, one naming

RECENT_ENDED_JOBS = 3  # ended jobs kept in the queue panel (older ones are in the history)
STATUS_ICONS: dict[str, str] = {
    Status.QUEUED: "SORTTIME",
    Status.PROCESSING: "RENDER_ANIMATION",
    Status.PAUSED: "PAUSE",
    Status.COMPLETED: "CHECKMARK",
    Status.FAILED: "ERROR",
    Status.CANCELED: "CANCEL",
}


def _pair(layout: Any, label: str, value: str, alert: bool = False) -> None:
    split = layout.split(factor=0.4)
    split.label(text=label)
    right = split.row()
    right.alert = alert
    right.label(text=value)


def card_note(card: RateCard, synced: bool) -> str:
    if synced:
        return f"ACT3 rate card {card.version}; the service confirms it on Confirm."
    return "Built-in prices until the first sync; confirmed on Confirm."


def allowed_lengths(card: RateCard, engine_id: str) -> str:
    """'5, 10 or 15 s', or 'any whole second from 2 to 12 s'."""
    try:
        engine = card.engine(engine_id)
    except Exception:
        return ""
    if engine.durations:
        ds = [str(d) for d in engine.durations]
        return (", ".join(ds[:-1]) + " or " + ds[-1] if len(ds) > 1 else ds[0]) + " s"
    return f"any whole second from {engine.min_s} to {engine.max_s} s"


def snap_note(card: RateCard, line: Line) -> str | None:
    """'7 s → billed as 5 s: Wan 2.6 renders 5, 10 or 15 s', when the billed length is not the shot's own."""
    if line.duration_s is None or abs(line.shot.duration_s - line.duration_s) < 0.0005:
        return None
    return (
        f"{line.shot.duration_s:.3g} s → billed as {line.duration_s} s: "
        f"{engine_name(line.shot.engine, card)} renders {allowed_lengths(card, line.shot.engine)}"
    )


def billed_text(line: Line) -> str:
    """The length the service bills, marked with * when it is not the shot's own (the note below says why)."""
    if line.duration_s is None:
        return f"{line.shot.duration_s:.3g} s"
    return f"{line.duration_s} s" + ("" if snap_note_needed(line) is False else "*")


def snap_note_needed(line: Line) -> bool:
    return line.duration_s is not None and abs(line.shot.duration_s - line.duration_s) >= 0.0005


def wrap_lines(text: str, width: int, count: int) -> list[str]:
    """`text` on exactly `count` lines of about `width` characters (blank lines pad; the last ends in … if cut)."""
    lines = textwrap.wrap(text, width=max(12, width)) or [""]
    if len(lines) > count:
        lines = lines[:count]
        lines[-1] = lines[-1][: max(0, width - 1)].rstrip() + "…"
    return lines + [""] * (count - len(lines))


# ------------------------------------------------------------------------------------ estimate dialog

BATCH_ROWS_SHOWN = 15  # a longer batch lists its first rows and sums the rest in one line
SINGLE_CHARS = 60  # about how many characters a line of the one-shot dialog holds
BATCH_CHARS = 92


def verdict(est: Estimate, fitted_out: Sequence[bool] = ()) -> tuple[str, str, bool]:
    """What Confirm will do, in two short lines, and whether that is a refusal (alert).

    Confirm never sends what this refuses (`Estimate.why_not` is the rule; this is its wording for
    the dialog's fixed slot).
    """
    if est.refusal:
        return "Confirm sends nothing: this key may not spend credits.", est.refusal, True
    if not est.lines:
        return "Confirm sends nothing: there is no shot to render.", "", True
    if not est.sent:
        if est.blocked:
            stopped = est.blocked[0]
            return f"Confirm sends nothing: {stopped.name} cannot be rendered.", stopped.blocked_reason or "", True
        return "Confirm sends nothing: every shot is left out.", "Tick at least one shot to render.", True
    if est.shortfall > 0:
        return (
            f"Confirm sends nothing: {formatting.credits(est.shortfall)} short.",
            "Fit to Budget, Switch to Draft or Buy Credits.",
            True,
        )
    count = len(est.sent)
    first = f"Confirm holds {formatting.credits(est.total)} for {count} shot{'s' if count != 1 else ''}."
    left_out = est.blocked
    if len(left_out) == 1:
        return first, f"Left out: {left_out[0].blocked_reason}", False
    if left_out:
        return first, f"Left out: {len(left_out)} shots that cannot be rendered ({left_out[0].blocked_reason})", False
    fitted = sum(1 for f in fitted_out if f)
    if fitted:
        return first, f"{fitted} shot{'s' if fitted != 1 else ''} left out to fit the budget.", False
    return first, "Each shot is charged when it is done; a failed shot costs nothing.", False


def draw_estimate_single(layout: Any, est: Estimate, card: RateCard, *, synced: bool = True, op: Any = None) -> None:
    """One shot: its name, engine, tier, billed duration and estimated credits, then the balance."""
    if not est.lines:
        layout.label(text="There is no shot to render.", icon="ERROR")
        return
    line = est.lines[0]
    col = layout.column()
    _pair(col, "Shot", line.name)
    _pair(col, "Engine", engine_name(line.shot.engine, card))
    _pair(col, "Quality", tier_name(line.shot.tier, card))
    _pair(col, "Billed length", billed_text(line))
    _pair(col, "Estimated", formatting.credits(line.credits if line.duration_s is not None else None))
    note = snap_note(card, line)
    layout.label(text=f"* {note}" if note else "", icon="INFO" if note else "NONE")
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
    that Fit to Budget leaves out. The last column says what happens to each shot: sent (tick),
    cannot be rendered (warning), left out to fit the budget, or unticked.
    """
    if not est.lines:
        layout.label(text="No shots match this tag.", icon="ERROR")
        return
    header = layout.row()
    _cells(header, "Shot", "Engine", "Quality", "Billed", "Credits", "")
    col = layout.column(align=True)
    shown = est.lines[:BATCH_ROWS_SHOWN]
    for i, line in enumerate(shown):
        row = col.row()
        row.active = line.sendable
        out = i < len(fitted_out) and fitted_out[i]
        first = _cells(
            row,
            None,
            engine_name(line.shot.engine, card),
            tier_name(line.shot.tier, card),
            billed_text(line),
            formatting.credits(line.credits) if line.duration_s is not None else "—",
            _row_icon(line, out),
        )
        if i < len(rows):
            first.prop(rows[i], "include", text=line.name)
        else:
            first.label(text=line.name)
    rest = est.lines[len(shown) :]
    if rest:
        sent_rest = [ln for ln in rest if ln.sendable]
        col.label(
            text=f"… and {len(rest)} more shots: {len(sent_rest)} sent, "
            f"{formatting.credits(sum(ln.credits for ln in sent_rest))} (in the total below)"
        )
    notes = list(dict.fromkeys(n for n in (snap_note(card, ln) for ln in est.lines) if n))
    for note in notes[:3]:
        layout.label(text=f"* {note}", icon="INFO")
    if len(notes) > 3:
        layout.label(text=f"* and {len(notes) - 3} more lengths billed differently", icon="INFO")
    layout.separator()
    count = len(est.sent)
    _pair(layout, "Total", f"{formatting.credits(est.total)} for {count} shot{'s' if count != 1 else ''}")
    _draw_footer(layout, est, card, synced=synced, op=op, batch=True, fitted_out=fitted_out)


ROW_ICONS = {"sent": "CHECKMARK", "blocked": "ERROR", "fitted": "SORTSIZE", "unticked": "BLANK1"}


def _row_icon(line: Line, fitted_out: bool) -> str:
    if line.included and line.blocked_reason:
        return ROW_ICONS["blocked"]
    if fitted_out:
        return ROW_ICONS["fitted"]
    return ROW_ICONS["sent"] if line.sendable else ROW_ICONS["unticked"]


def _cells(row: Any, first: str | None, *texts: str) -> Any:
    """Shot | Engine | Quality | Billed | Credits (right-aligned) | status icon; returns the first cell."""
    split = row.split(factor=0.26)
    cell = split.row()
    if first is not None:
        cell.label(text=first)
    rest = split.split(factor=0.27)
    rest.label(text=texts[0])
    rest2 = rest.split(factor=0.3)
    rest2.label(text=texts[1])
    rest3 = rest2.split(factor=0.3)
    rest3.label(text=texts[2])
    rest4 = rest3.split(factor=0.8)
    right = rest4.row()
    right.alignment = "RIGHT"
    right.label(text=texts[3])
    icon = texts[4] if len(texts) > 4 else ""
    rest4.label(text="", icon=icon or "BLANK1")
    return cell


def _draw_footer(
    layout: Any, est: Estimate, card: RateCard, *, synced: bool, op: Any, batch: bool, fitted_out: Sequence[bool] = ()
) -> None:
    """The same rows in every state, so Confirm (at the dialog's foot) never moves under the pointer."""
    layout.separator()
    col = layout.column()
    _pair(col, "Available", formatting.credits(est.available))
    after = est.balance_after
    _pair(col, "Balance after", formatting.credits(after), alert=after is not None and after < 0)
    draft = est.draft_text()
    if draft:
        text = draft
    elif est.sent and all(ln.shot.tier == shots.DRAFT_TIER for ln in est.sent):
        text = "Already at Draft, the cheapest tier."
    else:
        text = "Nothing to compare with Draft."
    layout.label(text=text, icon="INFO")
    row = layout.row(align=True)
    if op is not None and hasattr(op, "use_draft"):
        row.prop(op, "use_draft", text="Switch to Draft", toggle=True, icon="SHADING_SOLID")
    if batch and op is not None and hasattr(op, "fit_to_budget"):
        row.prop(op, "fit_to_budget", text="Fit to Budget", toggle=True, icon="SORTSIZE")
    row.operator("act3.buy_credits", text="Buy Credits", icon="ADD")
    first, second, refused = verdict(est, fitted_out)
    box = layout.box()
    box.alert = refused
    width = BATCH_CHARS if batch else SINGLE_CHARS
    box.label(text=first, icon="CANCEL" if refused else "CHECKMARK")
    for line in wrap_lines(second, width, 2):
        box.label(text=line, icon="BLANK1")
    layout.label(text=card_note(card, synced))


# ------------------------------------------------------------------------------------ shots list


def shot_row_texts(line: Line, card: RateCard) -> tuple[str, str, str, str]:
    """(tier, engine, billed duration, estimated credits) as a Shots list row reads them."""
    cost = formatting.credits(line.credits) if line.duration_s is not None else "—"
    return tier_name(line.shot.tier, card), engine_name(line.shot.engine, card), billed_text(line), cost


def shot_icon(line: Line) -> str:
    """Locked, or cannot be sent (the reason is the row's tooltip and under the list); else none."""
    if line.shot.locked:
        return "LOCKED"
    if line.blocked_reason:
        return "ERROR"
    return "NONE"


def draw_shot_row(layout: Any, item: Any, line: Line, card: RateCard, width: float = 0) -> None:
    """One row of the Shots list: select box, name, tier, credits; engine and billed length when wide.

    The credits figure has its own right-aligned column, so a long name is cut before a number is;
    a shot that cannot be sent shows a dash there, with a lock or a warning sign.
    """
    tier, engine, duration, cost = shot_row_texts(line, card)
    row = layout.row(align=True)
    row.prop(item, "select", text="")
    wide = is_wide(width)
    split = row.split(factor=0.64 if not wide else 0.74)
    left = split.split(factor=0.46 if not wide else 0.28)
    left.label(text=line.name)
    if wide:
        cells = left.split(factor=0.32)
        cells.label(text=tier)
        cells2 = cells.split(factor=0.6)
        cells2.label(text=engine)
        cells2.label(text=duration)
    else:
        left.label(text=tier)
    right = split.row()
    right.alignment = "RIGHT"
    sendable = line.blocked_reason is None and not line.shot.locked
    right.alert = line.blocked_reason is not None and not line.shot.locked
    right.label(text=cost if sendable else "—", icon=shot_icon(line))


def shot_tooltip(line: Line, card: RateCard) -> str:
    """Everything about a shot row: what it costs, how its length is billed, and why it cannot be sent."""
    tier, engine, duration, cost = shot_row_texts(line, card)
    parts = [f"{line.name}: {tier} on {engine}, {duration.rstrip('*')} billed, {cost}"]
    note = snap_note(card, line)
    if note:
        parts.append(note)
    if line.blocked_reason:
        parts.append(f"Cannot be sent: {line.blocked_reason}")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ render queue

QUEUE_JOBS_SHOWN = 20
QUEUE_SHOTS_SHOWN = 12  # an unfolded job lists this many shots, then says how many more


def visible_jobs(jobs: dict[int, Job]) -> list[JobView]:
    """The organisation's latest jobs, newest first: running and paused ones always, then the ended ones."""
    views = shots.jobs_newest_first(jobs)
    active = [v for v in views if not v.ended]
    ended = [v for v in views if v.ended][: max(RECENT_ENDED_JOBS, QUEUE_JOBS_SHOWN - len(active))]
    return sorted(active + ended, key=lambda v: -v.id)


def job_counts(view: JobView) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shot in view.shots:
        counts[shot.status] = counts.get(shot.status, 0) + 1
    return counts


def job_summary(view: JobView) -> str:
    """'Processing · 1 failed · 8 to go' (the bar has the done count; a canceled job says how many were canceled)."""
    counts = job_counts(view)
    parts = [view.status.capitalize()]
    if counts.get(Status.FAILED):
        parts.append(f"{counts['failed']} failed")
    if counts.get(Status.CANCELED):
        parts.append(f"{counts['canceled']} canceled")
    to_go = sum(v for k, v in counts.items() if k not in ENDED)
    if to_go:
        parts.append(f"{to_go} to go")
    return " · ".join(parts)


def job_bar_text(view: JobView) -> str:
    """The progress bar: '3/12 · 6,240 cr' (shots rendered, credits charged so far)."""
    done = job_counts(view).get(Status.COMPLETED, 0)
    return f"{done}/{view.total} · {formatting.credits(view.charged)}"


def job_bar_factor(view: JobView) -> float:
    """Rendered or failed shots over all of them: a canceled job's bar stops where it was canceled."""
    counts = job_counts(view)
    return (counts.get(Status.COMPLETED, 0) + counts.get(Status.FAILED, 0)) / view.total if view.total else 0.0


def draw_render_queue(
    layout: Any,
    state: Any,
    card: RateCard,
    guard_reasons: dict[int, str] | None = None,
    expanded: set[int] | frozenset[int] = frozenset(),
    width: float = 0,
) -> None:
    """The organisation's recent jobs: status, progress and charge; each job's shots on demand."""
    jobs: dict[int, Job] = getattr(state, "jobs", {}) or {}
    views = visible_jobs(jobs)
    if not views:
        layout.label(text="No ACT3 jobs yet.", icon="INFO")
        return
    for view in views[:QUEUE_JOBS_SHOWN]:
        job = jobs.get(view.id)
        reason = (guard_reasons or {}).get(view.id) or (job.status_reason if job is not None else None)
        draw_job(layout, view, card, reason, open_=view.id in expanded, width=width)
    if len(views) > QUEUE_JOBS_SHOWN:
        layout.label(text=f"{len(views) - QUEUE_JOBS_SHOWN} older jobs are in the history.")


def draw_job(
    layout: Any, view: JobView, card: RateCard, reason: str | None = None, *, open_: bool = False, width: float = 0
) -> None:
    box = layout.box()
    head = box.row(align=True)
    fold = head.operator(
        "act3.job_toggle_shots", text="", icon="DOWNARROW_HLT" if open_ else "RIGHTARROW", emboss=False
    )
    fold.job_id = view.id
    head.label(text=view.name, icon=STATUS_ICONS.get(view.status, "QUESTION"))
    if view.status in RUNNING:
        op = head.operator("act3.job_pause", text="", icon="PAUSE")
        op.job_id = view.id
    if view.status == Status.PAUSED:
        op = head.operator("act3.job_resume", text="", icon="PLAY")
        op.job_id = view.id
    if not view.ended:
        op = head.operator("act3.job_cancel", text="", icon="X")
        op.job_id = view.id
    box.progress(factor=job_bar_factor(view), type="BAR", text=job_bar_text(view))
    line = job_summary(view)
    if reason and view.status == Status.PAUSED:
        row = box.row()
        row.alert = True
        row.label(text=f"Paused: {reason}", icon="INFO")
    else:
        box.label(text=line)
    if not open_:
        return
    col = box.column(align=True)
    wide = is_wide(width)
    for index, shot in enumerate(view.shots[:QUEUE_SHOTS_SHOWN]):
        status = shot.status
        row = col.row(align=True)
        row.alert = status == Status.FAILED
        split = row.split(factor=0.5 if not wide else 0.3)
        split.label(text=shot.name or f"shot {index + 1}", icon=STATUS_ICONS.get(status, "DOT"))
        if wide:
            mid = split.split(factor=0.4)
            mid.label(text=f"{tier_name(shot.tier, card)} · {shot.duration_s} s")
            split = mid
        right = split.row()
        right.alignment = "RIGHT"
        if status == Status.FAILED:
            right.label(text="not charged")
            op = right.operator("act3.retry_shot", text="", icon="FILE_REFRESH")
            op.job_id = view.id
            op.shot_index = index
        elif status == Status.CANCELED:
            right.label(text="not charged")
        else:
            credits = formatting.credits(shot.credits)
            right.label(text=credits if status == Status.COMPLETED else f"est. {credits}")
    more = len(view.shots) - QUEUE_SHOTS_SHOWN
    if more > 0:
        col.label(text=f"… and {more} more shots")


# ------------------------------------------------------------------------------------ panels


def draw_shots_panel(
    layout: Any, scene: Any, settings: Any, est: Estimate | None, active: Line | None = None, width: float = 0
) -> None:
    """The Shots sub-panel: the list (filtered by tag), the active shot's settings, Generate buttons.

    `est` is the estimate of the shots the tag filter shows (for the batch button); `active` the
    active shot's line (its price and why it may not be sent). Every row here is always drawn, so
    the Generate buttons stay where the artist found them.
    """
    wide = is_wide(width)
    row = layout.row(align=True)
    row.operator(
        "act3.shots_from_markers", text="From Markers" if not wide else "From Camera Markers", icon="MARKER_HLT"
    )
    row.operator("act3.shot_add", text="", icon="ADD")
    row.operator("act3.shot_remove", text="", icon="REMOVE")
    layout.prop(settings, "tag_filter", text="", icon="VIEWZOOM", placeholder="Filter by tag")
    layout.template_list(
        "ACT3_UL_shots", "", scene, "act3_shots", scene, "act3_shots_index", rows=5, item_dyntip_propname="tooltip"
    )
    items = scene.act3_shots
    col = layout.column(align=True)
    if len(items) == 0:
        col.label(text="No shots: the scene is one shot.", icon="INFO")
        col.label(text=f"{scene.name}: frames {scene.frame_start}–{scene.frame_end}")
    elif 0 <= scene.act3_shots_index < len(items):
        item = items[scene.act3_shots_index]
        col.prop(item, "name")
        sub = col.row(align=True)
        sub.prop(item, "frame_start")
        sub.prop(item, "frame_end")
        col.prop(item, "camera")
        col.prop(item, "engine")
        col.prop(item, "tier")
        col.prop(item, "tags")
        col.prop(item, "locked")
        status = col.row()
        if active is not None and active.blocked_reason:
            status.alert = True
            status.label(text=active.blocked_reason, icon="ERROR")
        elif item.last_job_id:
            status.label(
                text=f"Last render: job {item.last_job_id} · {formatting.credits(item.last_cost)}", icon="CHECKMARK"
            )
        else:
            status.label(text="Not rendered yet", icon="BLANK1")
    tagged = shots.parse_tags(settings.tag_filter)
    tag_row = layout.row(align=True)
    tag_row.operator("act3.tag_shots", text="Tag", icon="BOOKMARKS")
    op = tag_row.operator("act3.fit_to_budget", text="Fit", icon="SORTSIZE")
    op.tag = settings.tag_filter
    op = tag_row.operator("act3.switch_to_draft", text="Draft", icon="SHADING_SOLID")
    op.tag = settings.tag_filter
    buttons = layout.row(align=True) if wide else layout.column(align=True)
    buttons.scale_y = 1.3
    buttons.operator("act3.generate", text="Generate Shot", icon="RENDER_STILL")
    total = formatting.credits(est.total) if est is not None and est.sent else "—"
    label = f"#{settings.tag_filter.strip()}" if tagged else "All"
    op = buttons.operator("act3.generate_batch", text=f"Generate {label} · {total}", icon="RENDER_ANIMATION")
    op.tag = settings.tag_filter


def draw_generate_settings(layout: Any, settings: Any, problems: Sequence[str] = (), width: float = 0) -> None:
    """The budget guard and the guarded operators (for the preferences or a sub-panel).

    `problems` says which guarded operators are not guarded, so a typo never passes for protection;
    each is wrapped to the region's `width` (px at UI scale 1; 0: the sidebar's default).
    """
    col = layout.column()
    col.prop(settings, "guard_enabled")
    sub = col.column()
    sub.active = bool(settings.guard_enabled)
    sub.prop(settings, "guard_min_balance")
    sub.prop(settings, "guard_pause_over_estimate")
    col.separator()
    col.label(text="Cost Estimate first for:")
    col.prop(settings, "intercept_ops", text="", placeholder="act3ai.generate, …")
    chars = int(((width or DEFAULT_SIDEBAR) - 80) / 7)
    for problem in problems:
        box = col.column(align=True)
        box.alert = True
        for i, line in enumerate(textwrap.wrap(problem, width=max(16, chars))):
            box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
