"""The ledger's rules as arithmetic: what a charge takes from which bucket, what a refill rolls
over and expires, what is available. No database here: plain integers in, plain values out, so
the ledger, a forecast that simulates refills and a budget check all read the same rules.

An account has three spendable buckets (the journal's names): `monthly` (this period's
allocation, column `monthly_remaining`), `bank_rolled` (rolled over from past periods, capped by
the plan) and `bank_purchased` (bought in packs, never capped, never expires); `held` is what
queued jobs have reserved out of their sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from act3_credits.core import billing

# The spending order: each bucket's journal name and its column on the account row.
SPENDING_ORDER = (
    ("monthly", "monthly_remaining"),
    ("bank_rolled", "bank_rolled"),
    ("bank_purchased", "bank_purchased"),
)


class OverdrawnError(RuntimeError):
    """A charge bigger than the balance (the hold makes it unreachable in the ledger)."""


def total(acct: Mapping[str, int]) -> int:
    """The balance: this month's credits plus both parts of the bank (held credits included)."""
    return acct["monthly_remaining"] + acct["bank_rolled"] + acct["bank_purchased"]


def available(acct: Mapping[str, int]) -> int:
    """What a new job may hold: the balance less what running jobs already hold."""
    return total(acct) - acct["held"]


def spend(acct: Mapping[str, int], amount: int) -> dict[str, int]:
    """The spending order: `amount` comes out of monthly first, then the rolled-over bank, then the
    purchased bank (bought credits never expire, so they go last).

    Returns each bucket's change (negative), leaving out buckets it did not touch; the account is
    not changed (`apply` does that). Raises OverdrawnError if the three buckets hold less.
    """
    buckets = (acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"])
    takes = billing.spend_in_order(buckets, amount)
    if sum(takes) != amount:
        raise OverdrawnError("charge exceeds the balance")
    return {bucket: -take for (bucket, _column), take in zip(SPENDING_ORDER, takes, strict=True) if take}


def apply(acct: dict[str, int], deltas: Mapping[str, int]) -> None:
    """Move the account's spendable buckets by `deltas` (from `spend`), in place."""
    for bucket, column in SPENDING_ORDER:
        delta = deltas.get(bucket)
        if delta:
            acct[column] += delta


@dataclass(frozen=True)
class Refill:
    """One billing date: what is left of the month rolls over or expires, then the month refills."""

    rolled: int  # into the rolled-over bank
    expired: int  # lost
    allocation: int  # the new month's credits

    def after(self, acct: Mapping[str, int]) -> dict[str, int]:
        """The buckets once this refill is applied (the purchased bank and holds are untouched)."""
        return {
            "monthly_remaining": self.allocation,
            "monthly_allocation": self.allocation,
            "bank_rolled": acct["bank_rolled"] + self.rolled,
        }


def refill(monthly_remaining: int, bank_rolled: int, allocation: int, rollover_cap: int) -> Refill:
    """The rollover rule: the month's remaining credits roll into the bank until the rolled-over
    part reaches the plan's cap (purchased credits do not count against it); the rest expires."""
    rolled, expired = billing.refill_split(monthly_remaining, bank_rolled, rollover_cap)  # shared with the forecast
    return Refill(rolled=rolled, expired=expired, allocation=allocation)


def refills_repeat(monthly_remaining: int, bank_rolled: int, allocation: int, rollover_cap: int) -> bool:
    """Whether every further refill (with nothing spent between) is the same as this one: the month
    is untouched and nothing more can roll over (the bank is at its cap, or the plan gives nothing),
    so each expires the whole allocation and refills it, and the balances stay as they are."""
    return monthly_remaining == allocation and (allocation == 0 or bank_rolled >= rollover_cap)


def repeated_expiry(allocation: int, periods: int) -> int:
    """What `periods` repeating refills (see `refills_repeat`) expire in all: each the whole month."""
    return allocation * periods


def shortfall(needed: int, available: int) -> int:
    """How many credits a batch lacks (0 when it is affordable)."""
    return max(0, needed - available)
