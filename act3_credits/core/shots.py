"""Shots, cost estimates and the budget guard, as plain Python (no bpy).

The Shots panel, the Cost Estimate dialog, `act3_credits.api` and the tests all read these
functions, so a number the artist sees in the list, in the dialog and in a script is the same one.
Every cost comes from `pricing.RateCard.price` (the formula the service charges with); this module
only decides which shots go, in which order, and says why one may not.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cached_property
from operator import attrgetter
from typing import Any

from . import formatting, pricing
from .contract import Job, JobShot, ServiceEstimate
from .pricing import PricingError, RateCard
from .values import value
from .vocabulary import ENDED, NAME_MAX_CHARS, RUNNING, Status

DRAFT_TIER = "draft"
DEFAULT_ENGINE = "veo-3.1"
DEFAULT_TIER = "standard"


# ---------------------------------------------------------------------------------------- durations


def frame_rate(fps: float, fps_base: float = 1.0) -> float:
    """Frames per second as Blender plays them: `fps / fps_base` (29.97 is 30 / 1.001)."""
    if fps <= 0 or fps_base <= 0:
        raise ValueError("The scene's frame rate must be greater than 0.")
    # fps_base is a 32-bit float in Blender (1.001 reads back as 1.00100004...): six decimals is exact enough.
    return fps / round(float(fps_base), 6)


def frame_count(frame_start: int, frame_end: int) -> int:
    """Frames in a range; frame_end is inclusive, as Blender renders it."""
    return int(frame_end) - int(frame_start) + 1


def duration_s(frame_start: int, frame_end: int, fps: float, fps_base: float = 1.0) -> float:
    """Seconds of a frame range at the scene's frame rate, to the microsecond (what is sent to the service)."""
    frames = frame_count(frame_start, frame_end)
    if frames <= 0:
        return 0.0
    return round(frames / frame_rate(fps, fps_base), 6)


def duration_text(requested_s: float, snapped_s: int | None) -> str:
    """'8 s' or '8 s (7.5 s)': the snapped duration the service charges, and the shot's own when it differs."""
    if snapped_s is None:
        return f"{requested_s:.3g} s"
    if abs(requested_s - snapped_s) < 0.0005:
        return f"{snapped_s} s"
    return f"{snapped_s} s ({requested_s:.3g} s)"


# ---------------------------------------------------------------------------------------- shots


@value
class Shot:
    """One shot as the estimate sees it (the bpy PropertyGroup converts to this)."""

    name: str
    engine: str
    tier: str
    duration_s: float
    locked: bool
    tags: str

    def __init__(
        self,
        name: str,
        engine: str = DEFAULT_ENGINE,
        tier: str = DEFAULT_TIER,
        duration_s: float = 0.0,
        locked: bool = False,
        tags: str = "",
    ) -> None:
        self.__dict__.update(name=name, engine=engine, tier=tier, duration_s=duration_s, locked=locked, tags=tags)

    def request_json(self) -> dict[str, Any]:
        """The shot as `POST /v1/estimates` and `POST /v1/jobs` take it."""
        return {"name": self.name, "engine": self.engine, "tier": self.tier, "duration_s": self.duration_s}


@value
class ShotRange:
    """A shot's frames and camera, as read from the timeline's camera markers."""

    name: str
    frame_start: int
    frame_end: int
    camera: str | None

    def __init__(self, name: str, frame_start: int, frame_end: int, camera: str | None = None) -> None:
        self.__dict__.update(name=name, frame_start=frame_start, frame_end=frame_end, camera=camera)


@value
class Marker:
    """A timeline marker."""

    name: str
    frame: int
    camera: str | None  # the camera object's name, or None for a marker not bound to a camera

    def __init__(self, name: str, frame: int, camera: str | None) -> None:
        self.__dict__.update(name=name, frame=frame, camera=camera)


def parse_tags(text: str) -> list[str]:
    """'hero, seq010 ,Hero' -> ['hero', 'seq010']: comma separated, trimmed, case-insensitive, once each."""
    seen: list[str] = []
    for part in (text or "").split(","):
        tag = part.strip().lower()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def join_tags(tags: Iterable[str]) -> str:
    return ", ".join(tags)


def add_tags(text: str, new: str) -> str:
    """The shot's tags with `new` (comma separated) added, keeping the order they were first given."""
    return join_tags(parse_tags(f"{text},{new}"))


def remove_tags(text: str, gone: str) -> str:
    drop = set(parse_tags(gone))
    return join_tags(t for t in parse_tags(text) if t not in drop)


def matches_tag(tags_text: str, tag_filter: str) -> bool:
    """True when the shot carries every tag of the filter ('' matches every shot)."""
    wanted = parse_tags(tag_filter)
    have = set(parse_tags(tags_text))
    return all(t in have for t in wanted)


def implicit_shot_range(scene_name: str, frame_start: int, frame_end: int) -> ShotRange:
    """A scene with no shots has one: the scene's frame range, named after the scene."""
    return ShotRange(scene_name, int(frame_start), int(frame_end))


def shots_from_markers(markers: Iterable[Marker], scene_start: int, scene_end: int) -> list[ShotRange]:
    """Blender's usual shot layout: each marker bound to a camera starts a shot that runs to the frame
    before the next such marker; the last runs to the scene end. Markers outside the scene range are
    ignored; two camera markers on one frame make one shot (the first by name)."""
    bound = sorted((m for m in markers if m.camera), key=lambda m: (m.frame, m.name))
    starts: list[Marker] = []
    for m in bound:
        if scene_start <= m.frame <= scene_end and (not starts or starts[-1].frame != m.frame):
            starts.append(m)
    out: list[ShotRange] = []
    used: set[str] = set()
    for i, m in enumerate(starts):
        end = starts[i + 1].frame - 1 if i + 1 < len(starts) else scene_end
        out.append(ShotRange(_unique_name(m.name or m.camera or "shot", used), m.frame, end, m.camera))
    return out


def _unique_name(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        candidate = f"{name}.{n:03d}"
        n += 1
    used.add(candidate)
    return candidate


def match_existing(new: Sequence[ShotRange], existing: Sequence[tuple[str, int]]) -> list[int | None]:
    """For each new shot, the index of the existing shot (name, frame_start) it updates, or None.

    A shot keeps its tags, tier and engine when it is found again by name, else by start frame
    (a renamed marker); each existing shot is matched once.
    """
    taken: set[int] = set()
    result: list[int | None] = [None] * len(new)
    by_name = {name: i for i, (name, _start) in enumerate(existing)}
    for k, shot in enumerate(new):
        i = by_name.get(shot.name)
        if i is not None and i not in taken:
            result[k] = i
            taken.add(i)
    for k, shot in enumerate(new):
        if result[k] is not None:
            continue
        for i, (_name, start) in enumerate(existing):
            if i not in taken and start == shot.frame_start:
                result[k] = i
                taken.add(i)
                break
    return result


# ---------------------------------------------------------------------------------------- estimates


@value
class Account:
    """What the add-on knows of who is spending: from `state.me`, `state.allowed_tiers`, `state.credits`."""

    plan: str
    role: str
    allowed_tiers: tuple[str, ...]
    available: int | None  # None until the first sync
    total: int | None

    def __init__(
        self,
        plan: str = "",
        role: str = "",
        allowed_tiers: tuple[str, ...] = (),
        available: int | None = None,
        total: int | None = None,
    ) -> None:
        self.__dict__.update(plan=plan, role=role, allowed_tiers=allowed_tiers, available=available, total=total)

    @classmethod
    def from_state(cls, state: Any) -> Account:
        me = getattr(state, "me", None)
        credits = getattr(state, "credits", None)
        plan = (me.plan if me else "") or (credits.plan if credits else "")
        role = me.role if me else ""
        allowed = tuple(getattr(state, "allowed_tiers", ()) or (me.allowed_tiers if me else ()))
        return cls(
            plan=plan,
            role=role,
            allowed_tiers=allowed,
            available=credits.available if credits else None,
            total=credits.total if credits else None,
        )


@value
class Line:
    """One row of the Cost Estimate dialog."""

    shot: Shot
    duration_s: int | None  # snapped, as the service charges; None when the shot cannot be priced
    credits: int
    draft_credits: int
    blocked_reason: str | None  # plain words; a blocked shot is never sent
    blocked_code: str | None
    included: bool  # the artist's checkbox in a batch

    def __init__(
        self,
        shot: Shot,
        duration_s: int | None,
        credits: int,
        draft_credits: int,
        blocked_reason: str | None = None,
        blocked_code: str | None = None,
        included: bool = True,
    ) -> None:
        d = self.__dict__  # item by item: a thousand lines are made per estimate
        d["shot"], d["duration_s"], d["credits"], d["draft_credits"] = shot, duration_s, credits, draft_credits
        d["blocked_reason"], d["blocked_code"], d["included"] = blocked_reason, blocked_code, included

    @property
    def name(self) -> str:
        return self.shot.name

    @property
    def sendable(self) -> bool:
        return self.included and self.blocked_reason is None


def shortfall_message(total: int, available: int) -> str:
    """'Not enough credits: this needs 12,480 cr, 3,480 cr more than the 9,000 cr available.'

    The one wording of a shortfall: the Cost Estimate, Confirm's report and `api.submit` read it.
    """
    return (
        f"Not enough credits: this needs {formatting.credits(total)}, "
        f"{formatting.credits(total - available)} more than the {formatting.credits(available)} available."
    )


@value
class Estimate:
    """The Cost Estimate: its lines, the balance it is compared with, and why nothing may be sent."""

    lines: tuple[Line, ...]
    available: int | None
    rate_card_version: str
    refusal: str | None  # why nothing at all may be sent (a viewer's key), plain words
    notes: tuple[str, ...]

    def __init__(
        self,
        lines: tuple[Line, ...],
        available: int | None,
        rate_card_version: str = "",
        refusal: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        self.__dict__.update(
            lines=lines, available=available, rate_card_version=rate_card_version, refusal=refusal, notes=notes
        )

    # An estimate never changes, and a dialog reads these on every redraw: each is counted once.
    @cached_property
    def _sent(self) -> tuple[Line, ...]:
        return tuple(ln for ln in self.lines if ln.sendable)

    @cached_property
    def _blocked(self) -> tuple[Line, ...]:
        return tuple(ln for ln in self.lines if ln.included and ln.blocked_reason)

    @property
    def sent(self) -> list[Line]:
        return list(self._sent)

    @property
    def blocked(self) -> list[Line]:
        return list(self._blocked)

    @cached_property
    def total(self) -> int:
        """What Confirm holds: the shots that will be sent."""
        return sum(ln.credits for ln in self._sent)

    @cached_property
    def draft_total(self) -> int:
        return sum(ln.draft_credits for ln in self._sent)

    @property
    def balance_after(self) -> int | None:
        return None if self.available is None else self.available - self.total

    @property
    def shortfall(self) -> int:
        if self.available is None:
            return 0
        return max(0, self.total - self.available)

    @property
    def can_send(self) -> bool:
        """Never send what the service would refuse: something to send, nothing refused, and covered."""
        return self.refusal is None and bool(self._sent) and self.shortfall == 0

    def draft_text(self) -> str | None:
        """'Draft first: 2,080 cr instead of 8,320 cr', when Draft would cost less."""
        if not self._sent or self.draft_total >= self.total:
            return None
        return f"Draft first: {formatting.credits(self.draft_total)} instead of {formatting.credits(self.total)}"

    def shortfall_text(self) -> str | None:
        if self.shortfall <= 0:
            return None
        return shortfall_message(self.total, self.available or 0)

    def why_not(self) -> str | None:
        """The one line that says why Confirm cannot send, or None when it can."""
        if self.refusal:
            return self.refusal
        if not self.lines:
            return "There are no shots to render."
        if not self._sent:
            if self._blocked:
                return self._blocked[0].blocked_reason
            return "Every shot is left out: tick at least one to render."
        return self.shortfall_text()

    def fit_to_budget(self) -> list[int]:
        """Indexes into `lines` to keep: the highest-priority shots, in list order, that fit the balance."""
        candidates = [i for i, ln in enumerate(self.lines) if ln.blocked_reason is None and ln.included]
        if self.available is None:
            return candidates
        kept = pricing.fit_to_budget([self.lines[i].credits for i in candidates], self.available)
        return [candidates[k] for k in kept]

    def with_included(self, included: Sequence[bool]) -> Estimate:
        lines = tuple(replace(ln, included=bool(inc)) for ln, inc in zip(self.lines, included, strict=True))
        return replace(self, lines=lines)

    def request_shots(self) -> list[dict[str, Any]]:
        return [ln.shot.request_json() for ln in self._sent]


def role_refusal(role: str) -> str | None:
    """Why this key's role may not spend, in plain words, or None (an unknown role is left to the service)."""
    if not role or role in pricing.ROLES_THAT_SPEND:
        return None
    return (
        f"This API key belongs to a {role}, and a {role} may not spend credits: "
        "ask an owner, admin or editor of the organisation for an editor key."
    )


def tier_refusal_text(card: RateCard, tier_id: str, account: Account) -> str | None:
    """4K outside Enterprise, in the words of `pricing.tier_refusal` (or of the service's allowed tiers)."""
    if account.plan in pricing.PLANS:
        reason = pricing.tier_refusal(card, tier_id, account.plan)
        if reason:
            return reason
    if account.allowed_tiers and tier_id not in account.allowed_tiers:
        name = card.tier(tier_id).name
        return f"The {name} tier is not included in this organisation's plan."
    return None


def locked_refusal(name: str) -> str:
    return f"Shot {name} is locked: unlock it in the Shots list to render it again."


def long_name_refusal(name: str) -> str:
    return (
        f"Shot {formatting.one_line(name, 40)} has a name of {len(name):,} characters; "
        f"ACT3 takes at most {NAME_MAX_CHARS}: rename it."
    )


def estimate(
    shots: Sequence[Shot],
    card: RateCard,
    account: Account,
    included: Sequence[bool] | None = None,
) -> Estimate:
    """The Cost Estimate for these shots, in order, from the cached rate card (no network).

    Panels and the dialog call this on every redraw: asked again with equal shots, the same card, an
    equal account and the same checkboxes, it answers the estimate it made before (the last few are
    kept, so the Shots panel and an open dialog do not push each other's out). A one-shot estimate
    (a row of the Shots list) is simply made again: as cheap as looking it up.
    """
    n = len(shots)
    flags = None if included is None else tuple(map(bool, included[:n]))
    if flags is not None and len(flags) < n:
        raise IndexError(f"{n} shots but {len(flags)} checkboxes")
    if n <= 1:
        return _estimate(shots, card, account, flags)
    # Thousands of tuples and lines are allocated, none referring back to another: the cyclic
    # collector would only walk all of Blender's objects again (most of the time of 10,000 shots).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _remembered(shots, card, account, flags)
    finally:
        if collecting:
            gc.enable()


def _remembered(shots: Sequence[Shot], card: RateCard, account: Account, flags: tuple[bool, ...] | None) -> Estimate:
    global _recent
    seen = _fingerprint(shots)
    recent = _recent
    for entry in recent:
        c, a, f, s, est = entry
        if c is card and a == account and f == flags and s == seen:
            break
    else:
        entry = (card, account, flags, seen, _estimate(shots, card, account, flags))
    # A new list each time (never changed in place): a script's thread may be estimating too.
    _recent = [entry, *(e for e in recent if e is not entry)][:_RECENT]
    return entry[4]


# The last estimates, newest first, with what each was made of (its card by identity: a card never changes).
_recent: list[tuple[RateCard, Account, tuple[bool, ...] | None, Any, Estimate]] = []
_RECENT = 4
_SHOT_FIELDS = attrgetter("name", "engine", "tier", "duration_s", "locked", "tags")
_DURATION = attrgetter("duration_s")


def _fingerprint(shots: Sequence[Shot]) -> tuple[list[Any], ...]:
    """Everything of the shots an estimate reads, gathered and compared in C rather than shot by shot
    in Python; with the types, as equal is not enough: True == 1, but True is refused and 1 is priced."""
    return list(map(_SHOT_FIELDS, shots)), list(map(type, shots)), list(map(type, map(_DURATION, shots)))


_Priced = tuple[int | None, int, int, str | None, str | None]  # snapped, credits, draft credits, reason, code


def _estimate(shots: Sequence[Shot], card: RateCard, account: Account, flags: tuple[bool, ...] | None) -> Estimate:
    refusal = role_refusal(account.role)
    # A request snaps to one of an engine's durations, and shots of one engine, tier and snapped
    # duration cost the same: each is worked out once (a few hundred prices for thousands of shots
    # of any lengths). Shots of one tier are refused alike.
    snaps: dict[tuple[str, float], int | None] = {}
    priced: dict[tuple[str, str, int], _Priced] = {}
    tier_reasons: dict[str, str | None] = {}
    lines: list[Line] = []
    append = lines.append
    for k, shot in enumerate(shots):
        seconds = shot.duration_s
        p = None
        if type(seconds) is float:  # (only floats share: True == 1, yet True is refused and 1 is priced)
            try:
                engine = shot.engine
                snapped = snaps.get((engine, seconds), _UNSNAPPED)
                if snapped is _UNSNAPPED:
                    snapped = snaps[engine, seconds] = _snap(card, engine, seconds)
                if snapped is not None:
                    key = (engine, shot.tier, snapped)
                    p = priced.get(key)
                    if p is None:  # an allowed duration snaps to itself: the shot's own price
                        p = priced[key] = _price(card, engine, shot.tier, float(snapped))
            except TypeError:  # an unhashable engine or tier id: `_price` says why it is refused
                pass
        if p is None:  # refused before a price (its own words from `_price`), or not a float
            p = _price(card, shot.engine, shot.tier, seconds)
        snapped, credits, draft, reason, code = p
        if reason is None and shot.locked:
            reason, code = locked_refusal(shot.name), "locked"
        if reason is None and isinstance(shot.name, str) and len(shot.name) > NAME_MAX_CHARS:
            reason, code = long_name_refusal(shot.name), "name_too_long"
        if reason is None:
            tier = shot.tier
            if tier in tier_reasons:
                tier_reason = tier_reasons[tier]
            else:
                tier_reason = tier_reasons[tier] = tier_refusal_text(card, tier, account)
            if tier_reason:
                reason, code = tier_reason, "tier_not_allowed"
            elif refusal:
                reason, code = refusal, "forbidden"
        append(Line(shot, snapped, credits, draft, reason, code, True if flags is None else flags[k]))
    return Estimate(tuple(lines), account.available, card.version, refusal)


_UNSNAPPED: Any = object()


def _snap(card: RateCard, engine_id: str, seconds: float) -> int | None:
    """The engine's duration for `seconds`; None when the card refuses the engine or the duration."""
    try:
        return card.engine(engine_id).snap(seconds)
    except PricingError:
        return None


def _price(card: RateCard, engine_id: str, tier_id: str, seconds: float) -> _Priced:
    """`card.price` of the shot and of its Draft, as numbers; a refusal in the card's own words."""
    snapped: int | None = None
    credits = 0
    try:
        engine = card.engine(engine_id)
        tier = card.tier(tier_id)
        snapped = engine.snap(seconds)
        credits = tier.cost(engine.rate_per_second, snapped)
        draft = card.tier(DRAFT_TIER).cost(engine.rate_per_second, snapped)
    except PricingError as exc:
        return snapped, credits, 0, exc.message, exc.code
    return snapped, credits, draft, None, None


def differs_from_service(ours: Estimate, answer: ServiceEstimate) -> str | None:
    """None when the service's estimate for the sent shots matches ours, else one readable line."""
    theirs = answer.credits_by_name()
    for ln in ours.sent:
        if theirs.get(ln.name) != ln.credits:
            return (
                f"The service prices shot {ln.name} at {formatting.credits(theirs.get(ln.name))}, "
                f"not {formatting.credits(ln.credits)}: the rate card changed; check the new estimate."
            )
    if answer.blocked:
        first = answer.blocked[0]
        return first.reason or f"The service refuses shot {first.name}."
    return None


def switch_to_draft(shots: Sequence[Shot]) -> list[Shot]:
    return [replace(s, tier=DRAFT_TIER) for s in shots]


# ---------------------------------------------------------------------------------------- budget guard

ACTIVE_JOB_STATUSES = RUNNING


def guard_decision(
    *,
    job: Job,
    balance_total: int | None,
    min_balance: int,
    pause_over_estimate: bool,
    estimate: int | None = None,
) -> str | None:
    """Why the budget guard pauses this job now, in plain words, or None.

    `balance_total` is the organisation's balance as it drops shot by shot (the `total`: what is
    held for a batch is still the studio's until a shot is charged). `min_balance` 0 switches that
    check off. `estimate` is what the add-on estimated at Confirm (the job's own estimate otherwise).
    """
    if job.status not in ACTIVE_JOB_STATUSES:
        return None
    name = job.name or f"job {job.id}"
    if min_balance > 0 and balance_total is not None and balance_total < min_balance:
        return (
            f"Budget guard paused {name}: the balance fell to {formatting.credits(balance_total)}, "
            f"below your minimum of {formatting.credits(min_balance)}."
        )
    expected = estimate if estimate is not None else job.estimated_credits
    charged = job.charged_credits
    if pause_over_estimate and charged > expected:
        return (
            f"Budget guard paused {name}: it has been charged {formatting.credits(charged)}, "
            f"more than its estimate of {formatting.credits(expected)}."
        )
    return None


# ---------------------------------------------------------------------------------------- queue view


@value
class JobView:
    """A job of `state.jobs` as the Render Queue draws it."""

    id: int
    name: str
    status: Status
    done: int
    total: int
    charged: int
    estimated: int
    shots: tuple[JobShot, ...]

    def __init__(
        self,
        id: int,
        name: str,
        status: Status,
        done: int,
        total: int,
        charged: int,
        estimated: int,
        shots: tuple[JobShot, ...],
    ) -> None:
        self.__dict__.update(
            id=id, name=name, status=status, done=done, total=total, charged=charged, estimated=estimated, shots=shots
        )

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def progress_text(self) -> str:
        return f"{self.done}/{self.total} shots · {formatting.credits(self.charged)} of {formatting.credits(self.estimated)}"


SHOT_ENDED = ENDED


def job_view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        name=job.name or f"Job {job.id}",
        status=job.status,
        done=sum(1 for s in job.shots if s.status in SHOT_ENDED),
        total=len(job.shots),
        charged=job.charged_credits,
        estimated=job.estimated_credits,
        shots=job.shots,
    )


def shot_status_text(shot: JobShot) -> str:
    """'completed · 2,080 cr', 'failed: engine timed out · not charged', 'queued · 2,080 cr est.'"""
    status = shot.status
    credits = shot.credits
    if status == Status.COMPLETED:
        return f"completed · {formatting.credits(credits)}"
    if status == Status.FAILED:
        error = shot.error or "failed"
        return f"failed: {error} · not charged"
    if status == Status.CANCELED:
        return "canceled · not charged"
    return f"{status} · {formatting.credits(credits)} est."


def jobs_newest_first(jobs: dict[int, Job]) -> list[JobView]:
    return [job_view(j) for _id, j in sorted(jobs.items(), key=lambda kv: -int(kv[0]))]
