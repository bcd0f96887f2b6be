"""Billing dates, the spending order and the refill's split: the calendar side of refills, which
bucket a charge takes from, and what a refill does with the month that is left.

An org refills at 00:00 UTC on its billing day each month; a billing day of 29-31 falls on the last
day of shorter months (day 31 is 28 or 29 February, 30 April, ...). Plain Python: the service's
ledger and the runway forecast (core/forecast.py, which the add-on draws too) share it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, datetime


def billing_date(year: int, month: int, billing_day: int) -> date:
    return date(year, month, min(billing_day, calendar.monthrange(year, month)[1]))


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    m = year * 12 + (month - 1) + by
    return m // 12, m % 12 + 1


def period_start(today: date, billing_day: int) -> date:
    """The latest billing date on or before `today`: the start of the period `today` is in."""
    this_month = billing_date(today.year, today.month, billing_day)
    if this_month <= today:
        return this_month
    y, m = _shift(today.year, today.month, -1)
    return billing_date(y, m, billing_day)


def next_billing_date(today: date, billing_day: int) -> date:
    """The first billing date strictly after `today`: when the next refill happens."""
    start = period_start(today, billing_day)
    y, m = _shift(start.year, start.month, 1)
    return billing_date(y, m, billing_day)


def periods_between(last_start: date, now: datetime | date, billing_day: int) -> Iterator[date]:
    """Every billing date after `last_start` up to and including `now`'s day, oldest first."""
    today = now.date() if isinstance(now, datetime) else now
    current = period_start(today, billing_day)
    y, m = last_start.year, last_start.month
    while True:
        y, m = _shift(y, m, 1)
        d = billing_date(y, m, billing_day)
        if d > current:
            return
        yield d


def periods_due(last_start: date, now: datetime | date, billing_day: int) -> int:
    """How many billing dates `periods_between` would yield, counted without walking them."""
    today = now.date() if isinstance(now, datetime) else now
    current = period_start(today, billing_day)
    return max(0, (current.year * 12 + current.month) - (last_start.year * 12 + last_start.month))


def nth_period_after(last_start: date, n: int, billing_day: int) -> date:
    """The n-th billing date after `last_start` (n >= 1): what `periods_between` yields n-th."""
    y, m = _shift(last_start.year, last_start.month, n)
    return billing_date(y, m, billing_day)


def spend_in_order(buckets: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    """What `amount` takes from (monthly, rolled-over bank, purchased bank), in that order: monthly
    credits expire at the refill, so they go first; bought credits never expire, so they go last.

    The three takes sum to `amount` when the buckets hold enough; the caller decides what a shortfall
    means (the ledger refuses it, the forecast stops there)."""
    left = amount
    takes = []
    for held in buckets:
        take = min(left, held)
        takes.append(take)
        left -= take
    return takes[0], takes[1], takes[2]


def refill_split(monthly_left: int, bank_rolled: int, rollover_cap: int) -> tuple[int, int]:
    """What a refill does with the month that is left: (rolled into the bank, expired).

    The rolled-over part of the bank is capped; purchased credits do not count against the cap.
    """
    room = max(0, rollover_cap - bank_rolled)
    rolled = min(monthly_left, room)
    return rolled, monthly_left - rolled
