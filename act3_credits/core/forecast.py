"""The runway forecast: how long the credits last at the recent pace. A pure function (no bpy, no
network): the service answers `GET /v1/account/forecast` with it and the add-on can draw it from
cached numbers.

The rules (docs/api.md has a worked example):
- The pace is credits charged per day: over the last 7 days, or over the last 30 when the 7 saw
  nothing; with neither, there is no runway (`runs_out_at` and `days_left` are None).
- Spending runs from `available` (the balance less what running jobs hold). Held credits are
  taken as already spent, in the charge's own order: monthly first, then the rolled-over bank,
  then purchased credits. The pace then spends the same way.
- At each billing date (00:00 UTC; a billing day of 29-31 falls on the last day of a shorter
  month) the monthly credits left roll into the bank up to the rollover cap (purchased credits do
  not count against it), the rest expires, and the month refills with the plan's allocation.
- The runway ends when everything is spent; it is followed up to one year (365 days) ahead and
  is None beyond.
- What the pace spends up to a billing date is rounded up to whole credits (a forecast never
  shows more left than the pace would leave); `days_left` is rounded down to a tenth of a day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction

from .billing import next_billing_date, refill_split, spend_in_order

HORIZON = timedelta(days=365)
DAY_S = 86_400


@dataclass(frozen=True)
class Pace:
    """Credits charged over the last 7 and the last 30 days."""

    charged_7d: int = 0
    charged_30d: int = 0

    @property
    def per_day(self) -> Fraction | None:
        """The pace the runway uses: the 7-day one, else the 30-day one, else None."""
        if self.charged_7d > 0:
            return Fraction(self.charged_7d, 7)
        if self.charged_30d > 0:
            return Fraction(self.charged_30d, 30)
        return None


@dataclass(frozen=True)
class Forecast:
    """`GET /v1/account/forecast`."""

    as_of: datetime
    pace_7d: int  # credits per day, rounded to the nearest whole credit (for display)
    pace_30d: int
    available: int
    held: int
    next_refill_at: datetime
    runs_out_at: datetime | None
    days_left: float | None
    monthly_left_at_refill: int
    will_roll_over: int
    will_expire: int

    def to_json(self) -> dict[str, object]:
        return {
            "as_of": _iso(self.as_of),
            "pace_per_day": {"7d": self.pace_7d, "30d": self.pace_30d},
            "available": self.available,
            "held": self.held,
            "next_refill_at": _iso(self.next_refill_at),
            "runs_out_at": _iso(self.runs_out_at) if self.runs_out_at else None,
            "days_left": self.days_left,
            "monthly_left_at_refill": self.monthly_left_at_refill,
            "will_roll_over": self.will_roll_over,
            "will_expire": self.will_expire,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Forecast:
        pace = d["pace_per_day"]
        assert isinstance(pace, dict)
        runs_out = d.get("runs_out_at")
        days_left = d.get("days_left")
        return cls(
            as_of=_parse(str(d["as_of"])),
            pace_7d=int(pace["7d"]),
            pace_30d=int(pace["30d"]),
            available=_int(d["available"]),
            held=_int(d["held"]),
            next_refill_at=_parse(str(d["next_refill_at"])),
            runs_out_at=_parse(str(runs_out)) if runs_out else None,
            days_left=float(days_left) if isinstance(days_left, int | float) else None,
            monthly_left_at_refill=_int(d["monthly_left_at_refill"]),
            will_roll_over=_int(d["will_roll_over"]),
            will_expire=_int(d["will_expire"]),
        )


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected a whole number of credits, got {v!r}")
    return v


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(s: str) -> datetime:
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _refill_after(moment: datetime, billing_day: int) -> datetime:
    return datetime.combine(next_billing_date(moment.date(), billing_day), time(0), UTC)


def _spend(buckets: list[int], amount: int) -> None:
    """Take `amount` from [monthly, bank_rolled, bank_purchased] in the spending order (it fits)."""
    takes = spend_in_order((buckets[0], buckets[1], buckets[2]), amount)
    for i, take in enumerate(takes):
        buckets[i] -= take


def forecast(
    *,
    monthly_remaining: int,
    bank_rolled: int,
    bank_purchased: int,
    held: int,
    monthly_allocation: int,
    rollover_cap: int,
    billing_day: int,
    pace: Pace,
    now: datetime,
) -> Forecast:
    """The runway from `now` (aware or naive UTC) at `pace`; see the module's rules."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    buckets = [monthly_remaining, bank_rolled, bank_purchased]
    _spend(buckets, held)
    available = sum(buckets)
    rate = pace.per_day
    refill_at = _refill_after(now, billing_day)
    first_refill = refill_at
    at = now
    runs_out_at: datetime | None = None
    at_refill: tuple[int, int, int] | None = None
    end = now + HORIZON
    while True:
        if rate is not None:
            left = sum(buckets)
            seconds = Fraction(int((refill_at - at).total_seconds()))
            spend = rate * seconds / DAY_S
            if spend >= left:
                runs_out_at = at + timedelta(seconds=math.floor(left * DAY_S / rate))
                if runs_out_at > end:
                    runs_out_at = None
                break
            _spend(buckets, math.ceil(spend))
        rolled, expired = refill_split(buckets[0], buckets[1], rollover_cap)
        if at_refill is None:
            at_refill = (buckets[0], rolled, expired)
            if rate is None:
                break
        if refill_at >= end:
            break  # it lasts beyond the horizon
        buckets = [monthly_allocation, buckets[1] + rolled, buckets[2]]
        at, refill_at = refill_at, _refill_after(refill_at, billing_day)
    if at_refill is None:  # it runs out before the first refill: nothing is left to roll or expire
        at_refill = (0, 0, 0)
    days_left = None
    if runs_out_at is not None:
        days_left = math.floor((runs_out_at - now).total_seconds() * 10 / DAY_S) / 10
    return Forecast(
        as_of=now,
        pace_7d=_rounded(pace.charged_7d, 7),
        pace_30d=_rounded(pace.charged_30d, 30),
        available=available,
        held=held,
        next_refill_at=first_refill,
        runs_out_at=runs_out_at,
        days_left=days_left,
        monthly_left_at_refill=at_refill[0],
        will_roll_over=at_refill[1],
        will_expire=at_refill[2],
    )


def _rounded(charged: int, days: int) -> int:
    """Credits per day to the nearest whole credit, halves up."""
    return (2 * charged + days) // (2 * days)
