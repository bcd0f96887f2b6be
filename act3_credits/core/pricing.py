"""The ACT3 rate card, plans and credit packs, and the one cost formula.

Pure Python, no bpy, no server imports: the service charges with these functions and the add-on
estimates with them, so an estimate and the charge for the same inputs cannot differ.
Credits are integers everywhere; tier multipliers are exact fractions, never floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

# A duration beyond this is a typo, not a shot: the service answers 422 instead of snapping it.
MAX_REQUESTED_DURATION_S = 600.0
MAX_SHOTS_PER_BATCH = 200


class PricingError(ValueError):
    """Bad pricing input. `code` is the service's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Tier:
    id: str
    name: str
    multiplier: Fraction  # the cost doubles with each step up


@dataclass(frozen=True)
class Engine:
    id: str
    name: str
    rate_per_second: int  # credits per second at the Standard tier
    durations: tuple[int, ...] = ()  # allowed durations, when the engine has a fixed list
    min_s: int = 0  # otherwise any whole second in [min_s, max_s]
    max_s: int = 0

    def allowed_durations(self) -> tuple[int, ...]:
        if self.durations:
            return self.durations
        return tuple(range(self.min_s, self.max_s + 1))

    def snap(self, requested_s: float) -> int:
        """The nearest allowed duration; a tie goes to the longer one."""
        validate_duration(requested_s)
        # Compare in exact fractions so 4.999999 vs 5 and x.5 ties behave predictably.
        want = Fraction(requested_s).limit_denominator(1_000_000)
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


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    monthly_allocation: int
    rollover_cap: int
    allowed_tiers: tuple[str, ...]


@dataclass(frozen=True)
class CreditPack:
    id: str
    credits: int
    price_cents: int
    currency: str = "USD"

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


@dataclass(frozen=True)
class ShotPrice:
    engine: str
    tier: str
    requested_s: float
    duration_s: int  # snapped: what is rendered and charged
    credits: int


@dataclass(frozen=True)
class RateCard:
    engines: tuple[Engine, ...]
    tiers: tuple[Tier, ...]
    version: str = "2026-11"
    _engine_index: dict[str, Engine] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._engine_index.update({e.id: e for e in self.engines})

    def engine(self, engine_id: str) -> Engine:
        try:
            return self._engine_index[engine_id]
        except (KeyError, TypeError):
            known = ", ".join(e.id for e in self.engines)
            raise PricingError("unknown_engine", f"Unknown engine {engine_id!r}; known engines: {known}.") from None

    def tier(self, tier_id: str) -> Tier:
        for t in self.tiers:
            if t.id == tier_id:
                return t
        known = ", ".join(t.id for t in self.tiers)
        raise PricingError("unknown_tier", f"Unknown quality tier {tier_id!r}; known tiers: {known}.")

    def price(self, engine_id: str, tier_id: str, requested_s: float) -> ShotPrice:
        """Shot cost = ceil(rate x tier multiplier x snapped duration), in whole credits."""
        engine = self.engine(engine_id)
        tier = self.tier(tier_id)
        snapped = engine.snap(requested_s)
        credits = math.ceil(engine.rate_per_second * tier.multiplier * snapped)
        return ShotPrice(engine.id, tier.id, float(requested_s), snapped, int(credits))

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
