"""The ACT3 rate card, plans and credit packs, and the one cost formula.

Pure Python, no bpy, no server imports: the service charges with these functions and the add-on
estimates with them, so an estimate and the charge for the same inputs cannot differ.
Credits are integers everywhere; tier multipliers are exact fractions, never floats.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from fractions import Fraction
from typing import Any

from .values import value

# A duration beyond this is a typo, not a shot: the service answers 422 instead of snapping it.
MAX_REQUESTED_DURATION_S = 600.0
MAX_SHOTS_PER_BATCH = 200


class PricingError(ValueError):
    """Bad pricing input. `code` is the service's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@value
class Tier:
    """A quality tier; the cost doubles with each step up."""

    id: str
    name: str
    multiplier: Fraction
    _num: int = field(init=False, repr=False, compare=False)  # the multiplier's terms, for `cost`
    _den: int = field(init=False, repr=False, compare=False)

    def __init__(self, id: str, name: str, multiplier: Fraction) -> None:
        d = self.__dict__
        d["id"], d["name"], d["multiplier"] = id, name, multiplier
        d["_num"], d["_den"] = multiplier.numerator, multiplier.denominator

    def cost(self, rate_per_second: int, duration_s: int) -> int:
        """ceil(rate x multiplier x duration), in integers: the number exact fractions give, without them."""
        return -(-rate_per_second * self._num * duration_s // self._den)


@value
class Engine:
    """A video engine: credits per second at the Standard tier, and the durations it renders."""

    id: str
    name: str
    rate_per_second: int
    durations: tuple[int, ...]  # allowed durations, when the engine has a fixed list
    min_s: int  # otherwise any whole second in [min_s, max_s]
    max_s: int
    # The allowed durations in order and the midpoints between neighbours, where a snap changes answer.
    _sorted: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _midpoints: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __init__(
        self, id: str, name: str, rate_per_second: int, durations: tuple[int, ...] = (), min_s: int = 0, max_s: int = 0
    ) -> None:
        allowed = sorted(set(durations or range(min_s, max_s + 1)))
        self.__dict__.update(
            id=id,
            name=name,
            rate_per_second=rate_per_second,
            durations=durations,
            min_s=min_s,
            max_s=max_s,
            _sorted=tuple(allowed),
            _midpoints=tuple((a + b) / 2 for a, b in zip(allowed, allowed[1:], strict=False)),
        )

    def allowed_durations(self) -> tuple[int, ...]:
        if self.durations:
            return self.durations
        return tuple(range(self.min_s, self.max_s + 1))

    def snap(self, requested_s: float) -> int:
        """The nearest allowed duration; a tie goes to the longer one.

        Defined on exact fractions (`Fraction(requested_s).limit_denominator(1_000_000)`), so 4.999999
        vs 5 and x.5 ties behave predictably. That fraction differs from `requested_s` by at most
        5e-7 and lies on the same side of every midpoint between two allowed durations (midpoints
        have denominator 2), unless it *is* the midpoint: so away from the midpoints, where the
        answer is the duration between the two around `requested_s`, no fraction is needed.
        """
        if type(requested_s) is float and 0.0 < requested_s <= MAX_REQUESTED_DURATION_S:
            value = requested_s  # the usual case, checked here (NaN fails the comparison)
        else:
            value = validate_duration(requested_s)
        mids = self._midpoints
        i = bisect_right(mids, value)  # mids[i - 1] <= value < mids[i]
        # On a midpoint it is a tie (the longer wins, self._sorted[i]); only next to one do fractions decide.
        if (i and 0.0 < value - mids[i - 1] < _NEAR_MIDPOINT) or (i < len(mids) and mids[i] - value < _NEAR_MIDPOINT):
            return self._snap_exact(value)
        if not self._sorted:
            return self._snap_exact(value)
        return self._sorted[i]

    def _snap_exact(self, value: float) -> int:
        want = Fraction(value).limit_denominator(1_000_000)
        best = None
        for d in self.allowed_durations():
            key = (abs(Fraction(d) - want), -d)
            if best is None or key < best[0]:
                best = (key, d)
        assert best is not None
        return best[1]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "rate_per_second": self.rate_per_second}
        if self.durations:
            out["durations"] = list(self.durations)
        else:
            out["min_s"] = self.min_s
            out["max_s"] = self.max_s
        return out


# Farther than this from a midpoint (with room for float rounding), a request snaps without fractions.
_NEAR_MIDPOINT = 1e-6


@value
class Plan:
    """A subscription plan: monthly credits, the rollover cap and the tiers it may render."""

    id: str
    name: str
    monthly_allocation: int
    rollover_cap: int
    allowed_tiers: tuple[str, ...]

    def __init__(
        self, id: str, name: str, monthly_allocation: int, rollover_cap: int, allowed_tiers: tuple[str, ...]
    ) -> None:
        self.__dict__.update(
            id=id,
            name=name,
            monthly_allocation=monthly_allocation,
            rollover_cap=rollover_cap,
            allowed_tiers=allowed_tiers,
        )


@value
class CreditPack:
    """Credits an owner or admin can buy."""

    id: str
    credits: int
    price_cents: int
    currency: str

    def __init__(self, id: str, credits: int, price_cents: int, currency: str = "USD") -> None:
        self.__dict__.update(id=id, credits=credits, price_cents=price_cents, currency=currency)

    @property
    def price_label(self) -> str:
        return f"${self.price_cents // 100:,}" + (f".{self.price_cents % 100:02d}" if self.price_cents % 100 else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "credits": self.credits,
            "price_cents": self.price_cents,
            "currency": self.currency,
            "price": self.price_label,
        }


@value
class ShotPrice:
    """What one shot costs."""

    engine: str
    tier: str
    requested_s: float
    duration_s: int  # snapped: what is rendered and charged
    credits: int

    def __init__(self, engine: str, tier: str, requested_s: float, duration_s: int, credits: int) -> None:
        self.__dict__.update(engine=engine, tier=tier, requested_s=requested_s, duration_s=duration_s, credits=credits)


@value
class RateCard:
    """The engines and tiers, and the one cost formula."""

    engines: tuple[Engine, ...]
    tiers: tuple[Tier, ...]
    version: str
    _engine_index: dict[str, Engine] = field(init=False, repr=False, compare=False)
    _tier_index: dict[str, Tier] = field(init=False, repr=False, compare=False)

    def __init__(self, engines: tuple[Engine, ...], tiers: tuple[Tier, ...], version: str = "2026-11") -> None:
        self.__dict__.update(
            engines=engines,
            tiers=tiers,
            version=version,
            _engine_index={e.id: e for e in engines},
            _tier_index={t.id: t for t in reversed(tiers)},  # the first of a repeated id, as a search finds
        )

    def engine(self, engine_id: str) -> Engine:
        try:
            return self._engine_index[engine_id]
        except (KeyError, TypeError):
            known = ", ".join(e.id for e in self.engines)
            raise PricingError("unknown_engine", f"Unknown engine {engine_id!r}; known engines: {known}.") from None

    def tier(self, tier_id: str) -> Tier:
        try:
            return self._tier_index[tier_id]
        except (KeyError, TypeError):
            known = ", ".join(t.id for t in self.tiers)
            raise PricingError("unknown_tier", f"Unknown quality tier {tier_id!r}; known tiers: {known}.") from None

    def price(self, engine_id: str, tier_id: str, requested_s: float) -> ShotPrice:
        """Shot cost = ceil(rate x tier multiplier x snapped duration), in whole credits."""
        engine = self.engine(engine_id)
        tier = self.tier(tier_id)
        snapped = engine.snap(requested_s)
        return ShotPrice(engine.id, tier.id, float(requested_s), snapped, tier.cost(engine.rate_per_second, snapped))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "engines": [e.to_json() for e in self.engines],
            "tiers": [
                {"id": t.id, "name": t.name, "multiplier": [t.multiplier.numerator, t.multiplier.denominator]}
                for t in self.tiers
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RateCard:
        """The card as `GET /v1/pricing` serves it (the add-on caches this)."""
        engines = tuple(
            Engine(
                id=str(e["id"]),
                name=str(e.get("name", e["id"])),
                rate_per_second=int(e["rate_per_second"]),
                durations=tuple(int(d) for d in e.get("durations", ())),
                min_s=int(e.get("min_s", 0)),
                max_s=int(e.get("max_s", 0)),
            )
            for e in data["engines"]
        )
        tiers = tuple(
            Tier(str(t["id"]), str(t.get("name", t["id"])), Fraction(int(t["multiplier"][0]), int(t["multiplier"][1])))
            for t in data["tiers"]
        )
        return cls(engines=engines, tiers=tiers, version=str(data.get("version", "")))


def validate_duration(requested_s: object) -> float:
    if isinstance(requested_s, bool) or not isinstance(requested_s, (int, float)):
        raise PricingError("invalid_duration", "duration_s must be a number of seconds.")
    value = float(requested_s)
    if not math.isfinite(value) or value <= 0:
        raise PricingError("invalid_duration", "duration_s must be greater than 0 seconds.")
    if value > MAX_REQUESTED_DURATION_S:
        raise PricingError(
            "invalid_duration", f"duration_s {value:g} is longer than the {MAX_REQUESTED_DURATION_S:g} s limit."
        )
    return value


TIERS: tuple[Tier, ...] = (
    Tier("draft", "Draft", Fraction(1, 2)),
    Tier("standard", "Standard", Fraction(1)),
    Tier("high", "High", Fraction(2)),
    Tier("4k", "4K", Fraction(4)),
)

DEFAULT_RATE_CARD = RateCard(
    engines=(
        Engine("veo-3.1", "Veo 3.1", 260, durations=(4, 6, 8)),
        Engine("veo-3.1-fast", "Veo 3.1 Fast", 98, durations=(4, 6, 8)),
        Engine("seedance-2.0", "Seedance 2.0", 245, min_s=4, max_s=15),
        Engine("wan-2.6", "Wan 2.6", 98, durations=(5, 10, 15)),
        Engine("grok-imagine", "Grok Imagine", 46, min_s=1, max_s=15),
    ),
    tiers=TIERS,
)

_STANDARD_TIERS = ("draft", "standard", "high")
PLANS: dict[str, Plan] = {
    "starter": Plan("starter", "Starter", 245_000, 612_500, _STANDARD_TIERS),
    "pro": Plan("pro", "Pro", 875_000, 2_187_500, _STANDARD_TIERS),
    "enterprise": Plan("enterprise", "Enterprise", 5_000_000, 12_500_000, _STANDARD_TIERS + ("4k",)),
}

CREDIT_PACKS: tuple[CreditPack, ...] = (
    CreditPack("pack-50k", 50_000, 10_000),
    CreditPack("pack-250k", 250_000, 47_500),
    CreditPack("pack-1m", 1_000_000, 180_000),
)

ROLES_THAT_SPEND = frozenset({"owner", "admin", "editor"})
ROLES_THAT_BUY = frozenset({"owner", "admin"})


def plan(plan_id: str) -> Plan:
    try:
        return PLANS[plan_id]
    except KeyError:
        raise PricingError("unknown_plan", f"Unknown plan {plan_id!r}.") from None


def pack(pack_id: str) -> CreditPack:
    for p in CREDIT_PACKS:
        if p.id == pack_id:
            return p
    known = ", ".join(p.id for p in CREDIT_PACKS)
    raise PricingError("unknown_pack", f"Unknown credit pack {pack_id!r}; packs: {known}.")


def tier_refusal(card: RateCard, tier_id: str, plan_id: str) -> str | None:
    """Why this plan may not render this tier, in plain words, or None."""
    p = plan(plan_id)
    if tier_id in p.allowed_tiers:
        return None
    name = card.tier(tier_id).name
    allowed = [pl.name for pl in PLANS.values() if tier_id in pl.allowed_tiers]
    return f"The {name} tier needs the {' or '.join(allowed)} plan; this organisation is on {p.name}."


def batch_total(prices: Iterable[ShotPrice]) -> int:
    return sum(p.credits for p in prices)


def fit_to_budget(costs: Sequence[int], budget: int) -> list[int]:
    """Indexes of the shots to keep: in list (priority) order, each shot that still fits is kept."""
    kept: list[int] = []
    left = budget
    for i, c in enumerate(costs):
        if c <= left:
            kept.append(i)
            left -= c
    return kept
