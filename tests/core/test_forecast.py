"""The runway forecast against cases worked out by hand from the rules (core/forecast.py's docstring,
docs/api.md), not from the code's output. Pure Python.

Unless a case says otherwise: billing day 1, now 2026-11-20 00:00 UTC, so the next refill is
2026-12-01 00:00 UTC, 11 days away; December and January have 31 days, February 2027 has 28.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from act3_credits.core.forecast import Forecast, Pace, forecast

NOW = datetime(2026, 11, 20, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Each case: the account, the plan, the pace, and what the forecast must say.
# fmt: off
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        # No charge in 30 days: no runway. The refill would find all 5,000 monthly credits left;
        # the bank (0) has room for 20,000, so all 5,000 roll over and nothing expires.
        "no pace",
        dict(monthly_remaining=5_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=10_000,
             rollover_cap=20_000, pace=Pace(0, 0)),
        dict(available=5_000, pace_7d=0, pace_30d=0, runs_out_at=None, days_left=None,
             monthly_left_at_refill=5_000, will_roll_over=5_000, will_expire=0),
    ),
    (
        # 7,000 in 7 days = 1,000 a day (the 30-day 12,000 / 30 = 400 a day is not used).
        # 9,000 available / 1,000 = 9 days < 11: out on 29 Nov 00:00, before the refill, so the
        # refill finds nothing to roll over or expire.
        "runs out before the refill",
        dict(monthly_remaining=9_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=10_000,
             rollover_cap=20_000, pace=Pace(7_000, 12_000)),
        dict(available=9_000, pace_7d=1_000, pace_30d=400, runs_out_at=at(2026, 11, 29), days_left=9.0,
             monthly_left_at_refill=0, will_roll_over=0, will_expire=0),
    ),
    (
        # 1,000 a day. By 1 Dec: 11 x 1,000 = 11,000 spent, 15,000 - 11,000 = 4,000 monthly left.
        # Cap 2,000, bank 0: 2,000 roll over, 2,000 expire. December starts with 10,000 + 2,000 =
        # 12,000 and the next refill is 31 days away (31,000 > 12,000): out 12 days later, on
        # 13 Dec 00:00; 11 + 12 = 23 days.
        "survives one refill",
        dict(monthly_remaining=15_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=10_000,
             rollover_cap=2_000, pace=Pace(7_000, 30_000)),
        dict(available=15_000, pace_7d=1_000, pace_30d=1_000, runs_out_at=at(2026, 12, 13), days_left=23.0,
             monthly_left_at_refill=4_000, will_roll_over=2_000, will_expire=2_000),
    ),
    (
        # Nothing in 7 days, so the 30-day pace: 60,000 / 30 = 2,000 a day. By 1 Dec 22,000 spent
        # from monthly: 50,000 - 22,000 = 28,000 left; the bank is at its cap (20,000), so all
        # 28,000 expire. December: 30,000 + 20,000 = 50,000 at 2,000 a day lasts 25 days
        # (< 31): out on 26 Dec 00:00; 11 + 25 = 36 days.
        "over the rollover cap",
        dict(monthly_remaining=50_000, bank_rolled=20_000, bank_purchased=0, held=0, monthly_allocation=30_000,
             rollover_cap=20_000, pace=Pace(0, 60_000)),
        dict(available=70_000, pace_7d=0, pace_30d=2_000, runs_out_at=at(2026, 12, 26), days_left=36.0,
             monthly_left_at_refill=28_000, will_roll_over=0, will_expire=28_000),
    ),
    (
        # 1,000 a day. By 1 Dec: 11,000 from monthly, 12,000 - 11,000 = 1,000 left; the cap is
        # 5,000 and the rolled bank 0, so all 1,000 roll over (the 50,000 purchased do not count
        # against the cap). December: 10,000 + 1,000 + 50,000; 31,000 spent, monthly then rolled
        # then purchased: purchased 50,000 - 20,000 = 30,000. January: 10,000 + 30,000, 31,000
        # spent: purchased 9,000. February: 10,000 + 9,000 = 19,000 at 1,000 a day = 19 days
        # (< 28): out on 20 Feb 2027 00:00; 11 + 31 + 31 + 19 = 92 days.
        "purchased credits present",
        dict(monthly_remaining=12_000, bank_rolled=0, bank_purchased=50_000, held=0, monthly_allocation=10_000,
             rollover_cap=5_000, pace=Pace(7_000, 30_000)),
        dict(available=62_000, pace_7d=1_000, pace_30d=1_000, runs_out_at=at(2027, 2, 20), days_left=92.0,
             monthly_left_at_refill=1_000, will_roll_over=1_000, will_expire=0),
    ),
    (
        # 12,000 held, taken as spent monthly first: monthly 10,000 -> 0, rolled 4,000 -> 2,000.
        # Available 2,000 at 3,500 / 7 = 500 a day: 4 days, out on 24 Nov 00:00.
        "held credits",
        dict(monthly_remaining=10_000, bank_rolled=4_000, bank_purchased=0, held=12_000, monthly_allocation=10_000,
             rollover_cap=10_000, pace=Pace(3_500, 15_000)),
        dict(available=2_000, held=12_000, pace_7d=500, pace_30d=500, runs_out_at=at(2026, 11, 24), days_left=4.0,
             monthly_left_at_refill=0, will_roll_over=0, will_expire=0),
    ),
    (
        # 3,000 held from monthly: 7,000 monthly + 4,000 rolled = 11,000 available. 2,100 / 7 =
        # 300 a day: 3,300 by 1 Dec, 3,700 monthly left; room 10,000 - 4,000 = 6,000, so all 3,700
        # roll over. Every later month gets 10,000 and spends at most 31 x 300 = 9,300: it never
        # runs out within the year.
        "held credits, lasting the year",
        dict(monthly_remaining=10_000, bank_rolled=4_000, bank_purchased=0, held=3_000, monthly_allocation=10_000,
             rollover_cap=10_000, pace=Pace(2_100, 9_000)),
        dict(available=11_000, held=3_000, pace_7d=300, pace_30d=300, runs_out_at=None, days_left=None,
             monthly_left_at_refill=3_700, will_roll_over=3_700, will_expire=0),
    ),
    (
        # Billing day 31 in February: now 10 Feb 2027 12:00, the period began 31 Jan, the next
        # refill is the last day of February, 28 Feb 00:00, 17.5 days away. 1,000 a day: 17,500
        # spent, 2,500 left; the cap is 0, so all 2,500 expire. Then 20,000 until 31 Mar (31 days
        # away, 31,000 > 20,000): out 20 days later, 20 Mar 00:00; 17.5 + 20 = 37.5 days.
        "billing day 31 in a short month",
        dict(monthly_remaining=20_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=20_000,
             rollover_cap=0, billing_day=31, now=at(2027, 2, 10, 12), pace=Pace(7_000, 30_000)),
        dict(next_refill_at=at(2027, 2, 28), runs_out_at=at(2027, 3, 20), days_left=37.5,
             monthly_left_at_refill=2_500, will_roll_over=0, will_expire=2_500),
    ),
    (
        # 700 / 7 = 100 a day: 1,100 by 1 Dec, 8,900 left, the cap is 0 so all of it expires.
        # No month spends more than 31 x 100 = 3,100 of its 10,000: it lasts beyond the year.
        "a year without running out",
        dict(monthly_remaining=10_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=10_000,
             rollover_cap=0, pace=Pace(700, 3_000)),
        dict(pace_7d=100, pace_30d=100, runs_out_at=None, days_left=None,
             monthly_left_at_refill=8_900, will_roll_over=0, will_expire=8_900),
    ),
    (
        # No allocation (refills add nothing), 36,000 purchased at 100 a day: 360 days, inside
        # the 365-day horizon: 20 Nov 2026 + 365 days is 20 Nov 2027, less 5 is 15 Nov 2027.
        "runs out just inside the year",
        dict(monthly_remaining=0, bank_rolled=0, bank_purchased=36_000, held=0, monthly_allocation=0,
             rollover_cap=0, pace=Pace(700, 0)),
        dict(runs_out_at=at(2027, 11, 15), days_left=360.0, monthly_left_at_refill=0, will_roll_over=0,
             will_expire=0),
    ),
    (
        # The same at 40,000: 400 days, beyond the year, so no date.
        "runs out just beyond the year",
        dict(monthly_remaining=0, bank_rolled=0, bank_purchased=40_000, held=0, monthly_allocation=0,
             rollover_cap=0, pace=Pace(700, 0)),
        dict(runs_out_at=None, days_left=None),
    ),
    (
        # 1,000 in 7 days is 142.857... a day, shown as 143; the runway uses the exact rate:
        # 1,000 available last exactly 7 days, to 27 Nov 00:00. 30 days: 1,000 / 30 = 33.3 -> 33.
        "a pace that is not a whole number",
        dict(monthly_remaining=1_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=10_000,
             rollover_cap=0, pace=Pace(1_000, 1_000)),
        dict(pace_7d=143, pace_30d=33, runs_out_at=at(2026, 11, 27), days_left=7.0),
    ),
]
# fmt: on


@pytest.mark.parametrize(("account", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_runway_is_what_the_rules_say(account: dict[str, Any], expected: dict[str, Any]) -> None:
    args = {"billing_day": 1, "now": NOW, **account}
    result = forecast(**args)
    got = {name: getattr(result, name) for name in expected}
    assert got == expected
    if "next_refill_at" not in expected:
        assert result.next_refill_at == DEC_1
    assert result.as_of == args["now"]


def test_the_json_names_the_fields_as_the_api_does_and_reads_back() -> None:
    result = forecast(
        monthly_remaining=9_000, bank_rolled=0, bank_purchased=0, held=0, monthly_allocation=10_000,
        rollover_cap=20_000, billing_day=1, pace=Pace(7_000, 12_000), now=NOW,
    )  # fmt: skip
    body = result.to_json()
    assert body == {
        "as_of": "2026-11-20T00:00:00Z",
        "pace_per_day": {"7d": 1_000, "30d": 400},
        "available": 9_000,
        "held": 0,
        "next_refill_at": "2026-12-01T00:00:00Z",
        "runs_out_at": "2026-11-29T00:00:00Z",
        "days_left": 9.0,
        "monthly_left_at_refill": 0,
        "will_roll_over": 0,
        "will_expire": 0,
    }
    assert Forecast.from_json(body) == result
