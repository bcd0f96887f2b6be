"""The ledger's rules as arithmetic (act3_server/rules.py), with numbers worked out by hand.

The Pro plan gives 875,000 credits a month and caps the rolled-over bank at 2,187,500; Starter
gives 245,000 with a cap of 612,500.
"""

from __future__ import annotations

import pytest

from act3_server import rules

PRO_MONTH, PRO_CAP = 875_000, 2_187_500
STARTER_MONTH, STARTER_CAP = 245_000, 612_500


def account(monthly: int, rolled: int = 0, purchased: int = 0, held: int = 0) -> dict[str, int]:
    return {"monthly_remaining": monthly, "bank_rolled": rolled, "bank_purchased": purchased, "held": held}


def test_a_charge_spends_the_month_before_the_bank() -> None:
    acct = account(PRO_MONTH, rolled=100_000, purchased=50_000)
    # 900,000 = all 875,000 of the month + 25,000 of the rolled-over bank; purchased untouched.
    assert rules.spend(acct, 900_000) == {"monthly": -875_000, "bank_rolled": -25_000}
    assert acct["monthly_remaining"] == PRO_MONTH  # spend only says; apply moves
    rules.apply(acct, {"monthly": -875_000, "bank_rolled": -25_000})
    assert acct == account(0, rolled=75_000, purchased=50_000)


def test_purchased_credits_are_spent_last() -> None:
    # 10,000 left of the month, 20,000 rolled over, 50,000 bought; a 45,000 charge takes
    # 10,000 + 20,000 and the last 15,000 from the purchased part.
    acct = account(10_000, rolled=20_000, purchased=50_000)
    deltas = rules.spend(acct, 45_000)
    assert deltas == {"monthly": -10_000, "bank_rolled": -20_000, "bank_purchased": -15_000}
    rules.apply(acct, deltas)
    assert acct == account(0, rolled=0, purchased=35_000)


def test_a_small_charge_touches_only_the_month() -> None:
    assert rules.spend(account(PRO_MONTH, rolled=5_000), 6_240) == {"monthly": -6_240}


def test_an_empty_month_goes_straight_to_the_purchased_bank() -> None:
    assert rules.spend(account(0, rolled=0, purchased=1_000), 400) == {"bank_purchased": -400}


def test_a_charge_beyond_the_three_buckets_is_refused() -> None:
    with pytest.raises(rules.OverdrawnError):
        rules.spend(account(100, rolled=200, purchased=300), 601)
    assert rules.spend(account(100, rolled=200, purchased=300), 600) == {
        "monthly": -100,
        "bank_rolled": -200,
        "bank_purchased": -300,
    }


def test_available_is_the_balance_less_what_jobs_hold() -> None:
    acct = account(245_000, rolled=10_000, purchased=5_000, held=15_000)
    assert rules.total(acct) == 260_000
    assert rules.available(acct) == 245_000
    assert rules.shortfall(249_600, 245_000) == 4_600
    assert rules.shortfall(6_240, 245_000) == 0


def test_the_month_left_rolls_over_up_to_the_cap_and_the_rest_expires() -> None:
    # Pro, 2,000,000 already rolled over: room for 187,500 of the 300,000 left; 112,500 expire.
    step = rules.refill(300_000, 2_000_000, PRO_MONTH, PRO_CAP)
    assert (step.rolled, step.expired, step.allocation) == (187_500, 112_500, PRO_MONTH)
    after = step.after(account(300_000, rolled=2_000_000, purchased=40_000))
    assert after == {"monthly_remaining": 875_000, "monthly_allocation": 875_000, "bank_rolled": 2_187_500}


def test_below_the_cap_everything_left_rolls_over() -> None:
    step = rules.refill(100_000, 0, STARTER_MONTH, STARTER_CAP)
    assert (step.rolled, step.expired) == (100_000, 0)


def test_purchased_credits_do_not_count_against_the_cap() -> None:
    # The cap compares with the rolled-over part only: 500,000 rolled + 900,000 bought still
    # leaves 112,500 of room on Starter, so 112,500 of the 245,000 roll over and 132,500 expire.
    acct = account(STARTER_MONTH, rolled=500_000, purchased=900_000)
    step = rules.refill(acct["monthly_remaining"], acct["bank_rolled"], STARTER_MONTH, STARTER_CAP)
    assert (step.rolled, step.expired) == (112_500, 132_500)
    assert step.after(acct)["bank_rolled"] == 612_500


def test_a_bank_above_the_cap_is_not_cut_but_takes_nothing_more() -> None:
    step = rules.refill(50_000, 700_000, STARTER_MONTH, STARTER_CAP)
    assert (step.rolled, step.expired) == (0, 50_000)
    assert step.after(account(50_000, rolled=700_000))["bank_rolled"] == 700_000


def test_refills_repeat_once_the_month_is_full_and_the_bank_at_its_cap() -> None:
    assert rules.refills_repeat(PRO_MONTH, PRO_CAP, PRO_MONTH, PRO_CAP)
    assert not rules.refills_repeat(PRO_MONTH, PRO_CAP - 1, PRO_MONTH, PRO_CAP)  # 1 more can roll over
    assert not rules.refills_repeat(PRO_MONTH - 1, PRO_CAP, PRO_MONTH, PRO_CAP)  # the month was spent
    assert rules.refills_repeat(0, 0, 0, 0)  # a plan that gives nothing
    # Twelve such periods of Pro expire 12 x 875,000.
    assert rules.repeated_expiry(PRO_MONTH, 12) == 10_500_000
