"""Billing dates: the service's name for the calendar in act3_credits/core/billing.py (one place for
the rule, shared with the runway forecast the add-on draws)."""

from act3_credits.core.billing import (
    billing_date,
    next_billing_date,
    nth_period_after,
    period_start,
    periods_between,
    periods_due,
    refill_split,
)

__all__ = [
    "billing_date",
    "next_billing_date",
    "nth_period_after",
    "period_start",
    "periods_between",
    "periods_due",
    "refill_split",
]
