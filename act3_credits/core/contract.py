"""What the service answers, as typed values: a job and its shots, the service's estimate, `me`, events.

`core/client.py` parses every answer once, with the `from_json` here: strict about the fields the
add-on reads (a missing or mistyped one is the service's fault, one readable `ServerError`), quiet
about fields it does not know (a newer service must not break an older add-on). Everything after the
client reads attributes; `core/sync.py` applies an event by building a new value
(`dataclasses.replace`), never by patching one in place. `to_json()` gives back the API's shape, for
`act3_credits.api` (whose scripts read dicts) and the cache.

A separate module from `state.py` (which keeps what the add-on holds, and Credits and HistoryRow):
these are the API's objects, in the order docs/api.md lists them. Declared like `values.py`'s
(`@value` compiles nothing at import, so enabling the add-on does not pay for them) with
`__slots__`, since a Render Queue holds one per shot of every job it shows.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from .state import Credits
from .values import value
from .vocabulary import Event, Status

_set = object.__setattr__  # how a frozen value's own __init__ sets its slots


def _obj(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"{what} is not an object")
    return data


def _int(data: dict[str, Any], name: str, what: str) -> int:
    got = data.get(name)
    if not isinstance(got, int) or isinstance(got, bool):
        raise TypeError(f"{what}.{name} is not an integer")
    return got


def _num(data: dict[str, Any], name: str, what: str) -> float:
    got = data.get(name)
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise TypeError(f"{what}.{name} is not a number")
    return float(got)


def _str(data: dict[str, Any], name: str, what: str) -> str:
    got = data.get(name)
    if not isinstance(got, str):
        raise TypeError(f"{what}.{name} is not a string")
    return got


def _opt_int(data: dict[str, Any], name: str) -> int:
    got = data.get(name)
    return got if isinstance(got, int) and not isinstance(got, bool) else 0


def _opt_str(data: dict[str, Any], name: str) -> str | None:
    got = data.get(name)
    return got if isinstance(got, str) else None


def _status(data: dict[str, Any], what: str) -> Status:
    """A known status as its `Status`; one a newer service added is kept as its word (a `Status`
    compares equal to its string, so readers see it as neither running nor ended and show it)."""
    got = _str(data, "status", what)
    try:
        return Status(got)
    except ValueError:
        return cast(Status, got)


def _list(data: dict[str, Any], name: str, what: str) -> list[Any]:
    got = data.get(name)
    if not isinstance(got, list):
        raise TypeError(f"{what}.{name} is not a list")
    return got


# ---------------------------------------------------------------------------------------- jobs


@value
class JobShot:
    """One shot of a job (not `shots.Shot`, the artist's shot before it is sent)."""

    __slots__ = (
        "index",
        "name",
        "engine",
        "tier",
        "requested_duration_s",
        "duration_s",
        "credits",
        "status",
        "error",
        "completed_at",
    )
    index: int
    name: str
    engine: str
    tier: str
    requested_duration_s: float
    duration_s: int
    credits: int  # what it was (completed) or will be charged
    status: Status
    error: str | None
    completed_at: str | None

    def __init__(
        self,
        index: int = 0,
        name: str = "",
        engine: str = "",
        tier: str = "",
        requested_duration_s: float = 0.0,
        duration_s: int = 0,
        credits: int = 0,
        status: Status = Status.QUEUED,
        error: str | None = None,
        completed_at: str | None = None,
    ) -> None:
        _set(self, "index", index)
        _set(self, "name", name)
        _set(self, "engine", engine)
        _set(self, "tier", tier)
        _set(self, "requested_duration_s", requested_duration_s)
        _set(self, "duration_s", duration_s)
        _set(self, "credits", credits)
        _set(self, "status", status)
        _set(self, "error", error)
        _set(self, "completed_at", completed_at)

    @classmethod
    def from_json(cls, data: Any) -> JobShot:
        d = _obj(data, "shot")
        duration = _int(d, "duration_s", "shot")
        requested = d.get("requested_duration_s")
        return cls(
            index=_int(d, "index", "shot"),
            name=_str(d, "name", "shot"),
            engine=_str(d, "engine", "shot"),
            tier=_str(d, "tier", "shot"),
            requested_duration_s=float(requested) if isinstance(requested, (int, float)) else float(duration),
            duration_s=duration,
            credits=_int(d, "credits", "shot"),
            status=_status(d, "shot"),
            error=_opt_str(d, "error"),
            completed_at=_opt_str(d, "completed_at"),
        )

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["status"] = str(self.status)  # the API's plain string, not the enum member
        return out


@value
class Job:
    """`GET /v1/jobs/{id}`: a batch sent to render, and what it has held and been charged."""

    __slots__ = (
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "member",
        "estimated_credits",
        "charged_credits",
        "held",
        "shots",
        "status_reason",
        "project",
        "warnings",
    )
    id: int
    name: str
    status: Status
    created_at: str
    updated_at: str
    member: str
    estimated_credits: int
    charged_credits: int
    held: int
    shots: tuple[JobShot, ...]
    status_reason: str | None  # from the last `job.status` event (why it paused); not in the Job answer
    project: str | None  # the project whose budget the job counts against
    warnings: tuple[dict[str, Any], ...]  # POST /v1/jobs past a warn or pause budget: {"code", "message", ...}

    def __init__(
        self,
        id: int = 0,
        name: str = "",
        status: Status = Status.QUEUED,
        created_at: str = "",
        updated_at: str = "",
        member: str = "",
        estimated_credits: int = 0,
        charged_credits: int = 0,
        held: int = 0,
        shots: tuple[JobShot, ...] = (),
        status_reason: str | None = None,
        project: str | None = None,
        warnings: tuple[dict[str, Any], ...] = (),
    ) -> None:
        _set(self, "id", id)
        _set(self, "name", name)
        _set(self, "status", status)
        _set(self, "created_at", created_at)
        _set(self, "updated_at", updated_at)
        _set(self, "member", member)
        _set(self, "estimated_credits", estimated_credits)
        _set(self, "charged_credits", charged_credits)
        _set(self, "held", held)
        _set(self, "shots", tuple(shots))
        _set(self, "status_reason", status_reason)
        _set(self, "project", project)
        _set(self, "warnings", tuple(warnings))

    @classmethod
    def from_json(cls, data: Any) -> Job:
        d = _obj(data, "job")
        return cls(
            id=_int(d, "id", "job"),
            name=_str(d, "name", "job"),
            status=_status(d, "job"),
            created_at=_opt_str(d, "created_at") or "",
            updated_at=_opt_str(d, "updated_at") or "",
            member=_opt_str(d, "member") or "",
            estimated_credits=_int(d, "estimated_credits", "job"),
            charged_credits=_int(d, "charged_credits", "job"),
            held=_int(d, "held", "job"),
            shots=tuple(JobShot.from_json(s) for s in _list(d, "shots", "job")),
            project=_opt_str(d, "project"),
            warnings=tuple(w for w in d.get("warnings") or () if isinstance(w, dict)),
        )

    def to_json(self) -> dict[str, Any]:
        skip = ("status_reason", "warnings")
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__ if name not in skip}
        out["status"] = str(self.status)
        out["shots"] = [s.to_json() for s in self.shots]
        if self.warnings:  # only the answer to POST /v1/jobs carries them
            out["warnings"] = [dict(w) for w in self.warnings]
        return out


# ---------------------------------------------------------------------------------------- estimates


@value
class EstimateLine:
    """One shot of the service's estimate, priced as the service will charge it."""

    __slots__ = ("name", "engine", "tier", "requested_duration_s", "duration_s", "credits", "blocked_reason")
    name: str
    engine: str
    tier: str
    requested_duration_s: float
    duration_s: int
    credits: int
    blocked_reason: str | None

    def __init__(
        self,
        name: str = "",
        engine: str = "",
        tier: str = "",
        requested_duration_s: float = 0.0,
        duration_s: int = 0,
        credits: int = 0,
        blocked_reason: str | None = None,
    ) -> None:
        _set(self, "name", name)
        _set(self, "engine", engine)
        _set(self, "tier", tier)
        _set(self, "requested_duration_s", requested_duration_s)
        _set(self, "duration_s", duration_s)
        _set(self, "credits", credits)
        _set(self, "blocked_reason", blocked_reason)

    @classmethod
    def from_json(cls, data: Any) -> EstimateLine:
        d = _obj(data, "estimate shot")
        return cls(
            name=_str(d, "name", "estimate shot"),
            engine=_str(d, "engine", "estimate shot"),
            tier=_str(d, "tier", "estimate shot"),
            requested_duration_s=_num(d, "requested_duration_s", "estimate shot"),
            duration_s=_int(d, "duration_s", "estimate shot"),
            credits=_int(d, "credits", "estimate shot"),
            blocked_reason=_opt_str(d, "blocked_reason"),
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@value
class BlockedShot:
    """A shot the service will not render for this key: `tier_not_allowed` (plan) or `forbidden` (role)."""

    __slots__ = ("name", "code", "reason")
    name: str
    code: str
    reason: str

    def __init__(self, name: str = "", code: str = "forbidden", reason: str = "") -> None:
        _set(self, "name", name)
        _set(self, "code", code)
        _set(self, "reason", reason)

    @classmethod
    def from_json(cls, data: Any) -> BlockedShot:
        d = _obj(data, "blocked shot")
        return cls(
            name=_opt_str(d, "name") or "",
            code=_opt_str(d, "code") or "forbidden",
            reason=_opt_str(d, "reason") or "",
        )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "code": self.code, "reason": self.reason}


@value
class ServiceEstimate:
    """`POST /v1/estimates`: the service's price (not `shots.Estimate`, the add-on's own from its cached card)."""

    __slots__ = (
        "shots",
        "total",
        "available",
        "balance_after",
        "affordable",
        "shortfall",
        "blocked",
        "project",
        "budget",
        "member_cap",
        "next_period",
    )
    shots: tuple[EstimateLine, ...]
    total: int  # every shot, blocked ones too
    available: int  # now, or right after the next refill when `when == "next_period"`
    balance_after: int
    affordable: bool
    shortfall: int
    blocked: tuple[BlockedShot, ...]
    project: str | None
    # What the project's budget and the member's cap would do (docs/api.md: `verdict`, `message`, ...)
    budget: dict[str, Any] | None
    member_cap: dict[str, Any] | None
    # `when="next_period"`: what the next refill leaves (`starts_on`, `available`, ...); None for now
    next_period: dict[str, Any] | None

    def __init__(
        self,
        shots: tuple[EstimateLine, ...] = (),
        total: int = 0,
        available: int = 0,
        balance_after: int = 0,
        affordable: bool = True,
        shortfall: int = 0,
        blocked: tuple[BlockedShot, ...] = (),
        project: str | None = None,
        budget: dict[str, Any] | None = None,
        member_cap: dict[str, Any] | None = None,
        next_period: dict[str, Any] | None = None,
    ) -> None:
        _set(self, "shots", tuple(shots))
        _set(self, "total", total)
        _set(self, "available", available)
        _set(self, "balance_after", balance_after)
        _set(self, "affordable", affordable)
        _set(self, "shortfall", shortfall)
        _set(self, "blocked", tuple(blocked))
        _set(self, "project", project)
        _set(self, "budget", budget)
        _set(self, "member_cap", member_cap)
        _set(self, "next_period", next_period)

    def limit_verdict(self, which: str) -> str | None:
        """`within`, `warn`, `pause` or `refuse` of the `budget` or the `member_cap`; None without one."""
        limit = self.budget if which == "budget" else self.member_cap
        return str(limit.get("verdict")) if limit else None

    @classmethod
    def from_json(cls, data: Any) -> ServiceEstimate:
        d = _obj(data, "estimate")
        total, available = _int(d, "total", "estimate"), _int(d, "available", "estimate")
        blocked = d.get("blocked") or []
        return cls(
            shots=tuple(EstimateLine.from_json(s) for s in _list(d, "shots", "estimate")),
            total=total,
            available=available,
            balance_after=_int(d, "balance_after", "estimate"),
            affordable=bool(d.get("affordable")),
            shortfall=_int(d, "shortfall", "estimate"),
            blocked=tuple(BlockedShot.from_json(b) for b in blocked) if isinstance(blocked, list) else (),
            project=_opt_str(d, "project"),
            budget=dict(d["budget"]) if isinstance(d.get("budget"), dict) else None,
            member_cap=dict(d["member_cap"]) if isinstance(d.get("member_cap"), dict) else None,
            next_period=dict(d["next_period"]) if isinstance(d.get("next_period"), dict) else None,
        )

    def credits_by_name(self) -> dict[str, int]:
        """Per-shot credits by shot name (to compare with the add-on's own estimate)."""
        return {line.name: line.credits for line in self.shots}

    def to_json(self) -> dict[str, Any]:
        return {
            "shots": [s.to_json() for s in self.shots],
            "total": self.total,
            "available": self.available,
            "balance_after": self.balance_after,
            "affordable": self.affordable,
            "shortfall": self.shortfall,
            "blocked": [b.to_json() for b in self.blocked],
            "project": self.project,
            "budget": self.budget,
            "member_cap": self.member_cap,
            **({"when": "next_period", "next_period": self.next_period} if self.next_period is not None else {}),
        }


# ---------------------------------------------------------------------------------------- me


@value
class Me:
    """`GET /v1/me`: who this key belongs to and what it may do."""

    __slots__ = (
        "org_id",
        "org_name",
        "plan",
        "member_id",
        "member_name",
        "role",
        "allowed_tiers",
        "can_spend",
        "can_buy",
        "payment_method",
        "cap",
    )
    org_id: int
    org_name: str
    plan: str
    member_id: int
    member_name: str
    role: str
    allowed_tiers: tuple[str, ...]
    can_spend: bool
    can_buy: bool
    payment_method: dict[str, Any] | None  # {"brand", "last4"}: formatting.payment_method reads it
    cap: dict[str, Any] | None  # the member's cap: {"credits_per_period", "spent", "held", "left", "period_start"}

    def __init__(
        self,
        org_id: int = 0,
        org_name: str = "",
        plan: str = "",
        member_id: int = 0,
        member_name: str = "",
        role: str = "",
        allowed_tiers: tuple[str, ...] = (),
        can_spend: bool = False,
        can_buy: bool = False,
        payment_method: dict[str, Any] | None = None,
        cap: dict[str, Any] | None = None,
    ) -> None:
        _set(self, "org_id", org_id)
        _set(self, "org_name", org_name)
        _set(self, "plan", plan)
        _set(self, "member_id", member_id)
        _set(self, "member_name", member_name)
        _set(self, "role", role)
        _set(self, "allowed_tiers", tuple(allowed_tiers))
        _set(self, "can_spend", can_spend)
        _set(self, "can_buy", can_buy)
        _set(self, "payment_method", payment_method)
        _set(self, "cap", cap)

    @classmethod
    def from_json(cls, data: Any) -> Me:
        d = _obj(data, "me")
        org, member = _obj(d.get("org"), "me.org"), _obj(d.get("member"), "me.member")
        tiers = d.get("allowed_tiers")
        card = d.get("payment_method")
        return cls(
            org_id=_opt_int(org, "id"),
            org_name=_str(org, "name", "me.org"),
            plan=_opt_str(org, "plan") or "",
            member_id=_opt_int(member, "id"),
            member_name=_opt_str(member, "name") or "",
            role=_str(member, "role", "me.member"),
            allowed_tiers=tuple(str(t) for t in tiers) if isinstance(tiers, list) else (),
            can_spend=bool(d.get("can_spend")),
            can_buy=bool(d.get("can_buy")),
            payment_method=dict(card) if isinstance(card, dict) else None,
            cap=dict(member["cap"]) if isinstance(member.get("cap"), dict) else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "org": {"id": self.org_id, "name": self.org_name, "plan": self.plan},
            "member": {"id": self.member_id, "name": self.member_name, "role": self.role, "cap": self.cap},
            "allowed_tiers": list(self.allowed_tiers),
            "can_spend": self.can_spend,
            "can_buy": self.can_buy,
            "payment_method": self.payment_method,
        }


# ---------------------------------------------------------------------------------------- events


def parse_credits(data: Any) -> Credits:
    """A Credits object from JSON, refusing anything without the numbers the top bar shows.

    (Credits itself is state.py's: the top bar's value, imported when the add-on is enabled.)
    """
    d = _obj(data, "credits")
    for name in ("total", "available", "held", "monthly_remaining", "monthly_allocation", "version"):
        _int(d, name, "credits")
    return Credits.from_json(d)


def _balance(d: dict[str, Any], what: str, required: bool = False) -> Credits | None:
    """The Credits an event carries (they all do today; only balance.changed is nothing without it)."""
    if d.get("balance") is None and not required:
        return None
    try:
        return parse_credits(d.get("balance"))
    except TypeError as exc:
        raise TypeError(f"{what}.balance: {exc}") from None


@value
class BalanceChanged:
    """`balance.changed`: after every change of the Credits numbers."""

    type: ClassVar[str] = Event.BALANCE_CHANGED
    __slots__ = ("seq", "balance", "reason")
    seq: int
    balance: Credits
    reason: str  # render, hold, release, purchase, refill

    def __init__(self, seq: int, balance: Credits, reason: str = "") -> None:
        _set(self, "seq", seq)
        _set(self, "balance", balance)
        _set(self, "reason", reason)

    @classmethod
    def from_json(cls, seq: int, d: dict[str, Any]) -> BalanceChanged:
        balance = _balance(d, cls.type, required=True)
        assert balance is not None
        return cls(seq, balance, _opt_str(d, "reason") or "")

    def data(self) -> dict[str, Any]:
        return {"balance": self.balance.to_json(), "reason": self.reason}


@value
class JobStatusChanged:
    """`job.status`: a job's status changed (`reason`, e.g. why it paused, may be None)."""

    type: ClassVar[str] = Event.JOB_STATUS
    __slots__ = ("seq", "job_id", "status", "reason", "balance")
    seq: int
    job_id: int
    status: Status
    reason: str | None
    balance: Credits | None  # never sent today; read like the other job events' if it is

    def __init__(
        self, seq: int, job_id: int, status: Status, reason: str | None = None, balance: Credits | None = None
    ) -> None:
        _set(self, "seq", seq)
        _set(self, "job_id", job_id)
        _set(self, "status", status)
        _set(self, "reason", reason)
        _set(self, "balance", balance)

    @classmethod
    def from_json(cls, seq: int, d: dict[str, Any]) -> JobStatusChanged:
        return cls(seq, _int(d, "job_id", cls.type), _status(d, cls.type), _opt_str(d, "reason"), _balance(d, cls.type))

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job_id": self.job_id, "status": str(self.status), "reason": self.reason}
        if self.balance is not None:
            out["balance"] = self.balance.to_json()
        return out


@value
class ShotCompleted:
    """`job.shot_completed`: a shot rendered and was charged `credits`."""

    type: ClassVar[str] = Event.SHOT_COMPLETED
    __slots__ = ("seq", "job_id", "shot_index", "shot", "credits", "balance")
    seq: int
    job_id: int
    shot_index: int
    shot: str
    credits: int
    balance: Credits | None

    def __init__(
        self, seq: int, job_id: int, shot_index: int, shot: str, credits: int, balance: Credits | None = None
    ) -> None:
        _set(self, "seq", seq)
        _set(self, "job_id", job_id)
        _set(self, "shot_index", shot_index)
        _set(self, "shot", shot)
        _set(self, "credits", credits)
        _set(self, "balance", balance)

    @classmethod
    def from_json(cls, seq: int, d: dict[str, Any]) -> ShotCompleted:
        what = cls.type
        return cls(
            seq,
            _int(d, "job_id", what),
            _int(d, "shot_index", what),
            _opt_str(d, "shot") or "",
            _int(d, "credits", what),
            _balance(d, what),
        )

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "shot_index": self.shot_index,
            "shot": self.shot,
            "credits": self.credits,
        }
        if self.balance is not None:
            out["balance"] = self.balance.to_json()
        return out


@value
class ShotFailed:
    """`job.shot_failed`: a shot failed and was not charged."""

    type: ClassVar[str] = Event.SHOT_FAILED
    __slots__ = ("seq", "job_id", "shot_index", "shot", "error", "balance")
    seq: int
    job_id: int
    shot_index: int
    shot: str
    error: str | None
    balance: Credits | None

    def __init__(
        self,
        seq: int,
        job_id: int,
        shot_index: int,
        shot: str,
        error: str | None = None,
        balance: Credits | None = None,
    ) -> None:
        _set(self, "seq", seq)
        _set(self, "job_id", job_id)
        _set(self, "shot_index", shot_index)
        _set(self, "shot", shot)
        _set(self, "error", error)
        _set(self, "balance", balance)

    @classmethod
    def from_json(cls, seq: int, d: dict[str, Any]) -> ShotFailed:
        what = cls.type
        return cls(
            seq,
            _int(d, "job_id", what),
            _int(d, "shot_index", what),
            _opt_str(d, "shot") or "",
            _opt_str(d, "error"),
            _balance(d, what),
        )

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "shot_index": self.shot_index,
            "shot": self.shot,
            "error": self.error,
        }
        if self.balance is not None:
            out["balance"] = self.balance.to_json()
        return out


@value
class PurchaseCompleted:
    """`purchase.completed`: a credit pack was bought (here or anywhere else in the organisation)."""

    type: ClassVar[str] = Event.PURCHASE_COMPLETED
    __slots__ = ("seq", "purchase_id", "pack_id", "credits", "balance")
    seq: int
    purchase_id: int
    pack_id: str
    credits: int
    balance: Credits | None

    def __init__(self, seq: int, purchase_id: int, pack_id: str, credits: int, balance: Credits | None = None) -> None:
        _set(self, "seq", seq)
        _set(self, "purchase_id", purchase_id)
        _set(self, "pack_id", pack_id)
        _set(self, "credits", credits)
        _set(self, "balance", balance)

    @classmethod
    def from_json(cls, seq: int, d: dict[str, Any]) -> PurchaseCompleted:
        what = cls.type
        return cls(
            seq,
            _opt_int(d, "purchase_id"),
            _opt_str(d, "pack_id") or "",
            _int(d, "credits", what),
            _balance(d, what),
        )

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"purchase_id": self.purchase_id, "pack_id": self.pack_id, "credits": self.credits}
        if self.balance is not None:
            out["balance"] = self.balance.to_json()
        return out


@value
class BillingRefilled:
    """`billing.refilled`: the monthly refill (one event for many periods when the dev clock jumps)."""

    type: ClassVar[str] = Event.BILLING_REFILLED
    __slots__ = (
        "seq",
        "period_start",
        "monthly_allocation",
        "rolled_over",
        "expired",
        "balance",
        "periods",
        "first_period_start",
    )
    seq: int
    period_start: str
    monthly_allocation: int
    rolled_over: int
    expired: int
    balance: Credits | None
    periods: int
    first_period_start: str | None

    def __init__(
        self,
        seq: int,
        period_start: str = "",
        monthly_allocation: int = 0,
        rolled_over: int = 0,
        expired: int = 0,
        balance: Credits | None = None,
        periods: int = 1,
        first_period_start: str | None = None,
    ) -> None:
        _set(self, "seq", seq)
        _set(self, "period_start", period_start)
        _set(self, "monthly_allocation", monthly_allocation)
        _set(self, "rolled_over", rolled_over)
        _set(self, "expired", expired)
        _set(self, "balance", balance)
        _set(self, "periods", periods)
        _set(self, "first_period_start", first_period_start)

    @classmethod
    def from_json(cls, seq: int, d: dict[str, Any]) -> BillingRefilled:
        what = cls.type
        return cls(
            seq,
            _opt_str(d, "period_start") or "",
            _int(d, "monthly_allocation", what),
            _int(d, "rolled_over", what),
            _int(d, "expired", what),
            _balance(d, what),
            _opt_int(d, "periods") or 1,
            _opt_str(d, "first_period_start"),
        )

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "period_start": self.period_start,
            "monthly_allocation": self.monthly_allocation,
            "rolled_over": self.rolled_over,
            "expired": self.expired,
        }
        if self.balance is not None:
            out["balance"] = self.balance.to_json()
        if self.periods != 1 or self.first_period_start is not None:
            out.update(periods=self.periods, first_period_start=self.first_period_start)
        return out


@value
class OtherEvent:
    """An event type this add-on does not know (a newer service's): passed on to subscribers as it came."""

    __slots__ = ("seq", "type", "raw")
    seq: int
    type: str  # type: ignore[misc]  # an instance field here, a ClassVar on the known events
    raw: dict[str, Any]

    def __init__(self, seq: int, type: str, raw: dict[str, Any]) -> None:
        _set(self, "seq", seq)
        _set(self, "type", type)
        _set(self, "raw", raw)

    def data(self) -> dict[str, Any]:
        return dict(self.raw)


ServiceEvent = (
    BalanceChanged | JobStatusChanged | ShotCompleted | ShotFailed | PurchaseCompleted | BillingRefilled | OtherEvent
)
JobEvent = JobStatusChanged | ShotCompleted | ShotFailed

EVENT_TYPES: dict[str, Any] = {
    cls.type: cls
    for cls in (BalanceChanged, JobStatusChanged, ShotCompleted, ShotFailed, PurchaseCompleted, BillingRefilled)
}


def parse_event(raw: Any) -> ServiceEvent:
    """One event of `GET /v1/events` (`{"seq", "type", "at", "data"}`); TypeError when unreadable."""
    e = _obj(raw, "event")
    seq = _opt_int(e, "seq")
    etype = _str(e, "type", "event")
    data = e.get("data") if isinstance(e.get("data"), dict) else {}
    assert isinstance(data, dict)
    known = EVENT_TYPES.get(etype)
    if known is None:
        return OtherEvent(seq, etype, data)
    event: ServiceEvent = known.from_json(seq, data)
    return event
