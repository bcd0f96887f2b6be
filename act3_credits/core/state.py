"""What the add-on knows, as plain Python: the one object draw code reads.

Only the main thread writes it (the sync worker's results are applied by `SyncWorker.drain`, which a
`bpy.app.timers` callback or `act3_credits.api` calls). Draw functions read it and never block.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from . import formatting
from .pricing import RateCard
from .values import value
from .vocabulary import Kind

if TYPE_CHECKING:  # imported by the worker's threads when the first answer comes, not at enable
    from .contract import Job, Me  # the API's objects (contract.py imports Credits from here)
    from .forecast import Forecast
    from .usage import Usage

# The top bar calls the balance stale when the last good sync is older than this.
STALE_AFTER_S = 60.0


# The classes here are imported when the add-on is enabled: `@value` gives a frozen dataclass's
# meaning without a dataclass's work at import (see core/values.py).


@value
class Credits:
    """`GET /v1/account/credits` (and `balance` in events)."""

    org_id: int
    plan: str
    total: int
    monthly_remaining: int
    monthly_allocation: int
    rollover_bank: int
    rollover_purchased: int
    rollover_cap: int
    held: int
    available: int
    billing_date: str
    as_of: str
    version: int

    def __init__(
        self,
        org_id: int = 0,
        plan: str = "",
        total: int = 0,
        monthly_remaining: int = 0,
        monthly_allocation: int = 0,
        rollover_bank: int = 0,
        rollover_purchased: int = 0,
        rollover_cap: int = 0,
        held: int = 0,
        available: int = 0,
        billing_date: str = "",
        as_of: str = "",
        version: int = 0,
    ) -> None:
        self.__dict__.update(
            org_id=org_id,
            plan=plan,
            total=total,
            monthly_remaining=monthly_remaining,
            monthly_allocation=monthly_allocation,
            rollover_bank=rollover_bank,
            rollover_purchased=rollover_purchased,
            rollover_cap=rollover_cap,
            held=held,
            available=available,
            billing_date=billing_date,
            as_of=as_of,
            version=version,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def rollover_rolled(self) -> int:
        return self.rollover_bank - self.rollover_purchased

    @property
    def monthly_fraction(self) -> float:
        """Share of the monthly allocation still left, 0..1 (for the progress bar)."""
        if self.monthly_allocation <= 0:
            return 0.0
        return max(0.0, min(1.0, self.monthly_remaining / self.monthly_allocation))


@value
class HistoryRow:
    id: int
    at: str
    kind: str
    shot: str | None
    engine: str | None
    tier: str | None
    duration_s: int | None
    credits: int
    monthly_delta: int
    bank_delta: int
    job_id: int | None
    member: str | None
    reason: str | None  # why a `failed` or `canceled` shot was not charged; None for other kinds
    auto: bool  # a purchase auto top-up made

    def __init__(
        self,
        id: int,
        at: str,
        kind: str,
        shot: str | None,
        engine: str | None,
        tier: str | None,
        duration_s: int | None,
        credits: int,
        monthly_delta: int,
        bank_delta: int,
        job_id: int | None,
        member: str | None,
        reason: str | None = None,
        auto: bool | None = False,
    ) -> None:
        self.__dict__.update(
            id=id,
            at=at,
            kind=kind,
            shot=shot,
            engine=engine,
            tier=tier,
            duration_s=duration_s,
            credits=credits,
            monthly_delta=monthly_delta,
            bank_delta=bank_delta,
            job_id=job_id,
            member=member,
            reason=reason,
            auto=bool(auto),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: data.get(k) for k in names})  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@value
class Spend:
    """The current billing period's spend and the runway: what the Spend panel and the runway line read.

    Fetched together by the worker (sync's "spend" request), so the chart, the tier figures and the
    runway always describe the same moment.
    """

    by_tier: Usage  # group_by=tier over the period
    days: tuple[tuple[str, Usage], ...]  # (tier id, group_by=day over the same period) for each tier
    top_shots: Usage  # group_by=shot, the 10 most expensive
    forecast: Forecast

    def __init__(
        self, by_tier: Usage, days: tuple[tuple[str, Usage], ...], top_shots: Usage, forecast: Forecast
    ) -> None:
        self.__dict__.update(by_tier=by_tier, days=days, top_shots=top_shots, forecast=forecast)


class History:
    """The loaded part of the transaction history, for one filter, newest first."""

    def __init__(
        self,
        rows: list[HistoryRow] | None = None,
        next_cursor: str | None = None,
        tier: str = "",
        shot: str = "",
        loading: bool = False,
        loaded_once: bool = False,
    ) -> None:
        self.rows: list[HistoryRow] = list(rows or [])
        self.next_cursor = next_cursor
        self.tier = tier
        self.shot = shot
        self.loading = loading
        self.loaded_once = loaded_once

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None or not self.loaded_once

    def apply_page(self, rows: list[HistoryRow], next_cursor: str | None, *, first: bool) -> None:
        """A page from the service: the first one replaces the list, later ones extend it."""
        if first:
            self.rows = list(rows)
        else:
            known = {r.id for r in self.rows}
            self.rows.extend(r for r in rows if r.id not in known)
        self.next_cursor = next_cursor
        self.loading = False
        self.loaded_once = True

    def merge_newest(self, rows: list[HistoryRow], next_cursor: str | None) -> bool:
        """The newest page, fetched again after an event: rows not loaded yet go on top. True if any."""
        known = {r.id for r in self.rows}
        new = [r for r in rows if r.id not in known]
        if not self.loaded_once or (self.rows and rows and len(new) == len(rows)):
            # Nothing loaded yet, or more happened than a page holds: start again from this page.
            changed = [r.id for r in rows] != [r.id for r in self.rows]
            self.apply_page(rows, next_cursor, first=True)
            return changed
        self.rows[:0] = new
        return bool(new)

    def tier_totals(self) -> dict[str, int]:
        """Credits spent per tier over the loaded render rows (positive numbers)."""
        totals: dict[str, int] = {}
        for row in self.rows:
            if row.kind == Kind.RENDER and row.tier:
                totals[row.tier] = totals.get(row.tier, 0) - row.credits
        return totals


class State:
    """Everything the add-on knows; written on the main thread only (see the module's docstring)."""

    def __init__(self, credits: Credits | None = None, connection: str = "connecting") -> None:
        self.credits = credits
        self.credits_from_cache = False
        self.me: Me | None = None
        self.history = History()
        self.packs: list[dict[str, Any]] = []
        self.payment_method: dict[str, Any] | None = None
        self.jobs: dict[int, Job] = {}  # by id; replaced whole by a fetch or an event, never patched
        self.budgets: list[dict[str, Any]] | None = None  # GET /v1/budgets (limits.budgets_by_project reads it)
        self.auto_top_up: dict[str, Any] | None = None  # GET /v1/account/auto-top-up
        self.rate_card: RateCard | None = None
        self.pricing_etag: str | None = None
        self.allowed_tiers: tuple[str, ...] = ()
        self.spend: Spend | None = None  # the period's usage and the forecast; None until the first answer
        # Connection: "ok", "connecting", "offline", "auth", "disabled" (online access off), "unconfigured"
        self.connection = connection
        self.last_error: str | None = None  # one readable line, for the panel and reports
        self.last_sync_monotonic: float | None = None  # when credits were last confirmed by the service
        self.last_sync_wall: dt.datetime | None = None
        self.last_message: str | None = None  # last outcome (purchase done, job sent...), for Blender's reports
        self.message_level = "INFO"  # INFO or WARNING: how the shell reports `last_message`
        self.change_count = 0  # bumped by every change, so waiters and redraws can tell

    def touch(self) -> None:
        self.change_count += 1

    def say(self, message: str, level: str = "INFO") -> None:
        """An outcome for the artist: the shell shows it once in Blender's status bar and Info log."""
        self.last_message = message
        self.message_level = level
        self.touch()

    def set_credits(self, credits: Credits, from_cache: bool = False) -> bool:
        """Apply a balance; an older `version` never overwrites a newer one. True when it changed."""
        if not from_cache:
            self.last_sync_monotonic = time.monotonic()
            self.last_sync_wall = dt.datetime.now(dt.UTC)
            self.connection = "ok"
            self.last_error = None
        held = self.credits
        if held is not None and not self.credits_from_cache and credits.org_id == held.org_id:
            if credits.version < held.version:
                return False
        changed = credits != self.credits or self.credits_from_cache != from_cache
        self.credits = credits
        self.credits_from_cache = from_cache
        if changed:
            self.touch()
        return changed

    def mark_synced(self) -> None:
        """The event stream is connected and quiet, so the balance held is still the service's."""
        if self.credits is not None and not self.credits_from_cache and self.connection == "ok":
            self.last_sync_monotonic = time.monotonic()
            self.last_sync_wall = dt.datetime.now(dt.UTC)

    def set_connection(self, connection: str, error: str | None) -> bool:
        """Record the link's state and its one-line reason. True when either changed."""
        if (connection, error) == (self.connection, self.last_error):
            return False
        self.connection = connection
        self.last_error = error
        self.touch()
        return True

    def is_stale(self, now_monotonic: float | None = None) -> bool:
        if self.credits is None or self.credits_from_cache or self.last_sync_monotonic is None:
            return True
        if self.connection != "ok":
            return True
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return now - self.last_sync_monotonic > STALE_AFTER_S

    def as_of_text(self) -> str:
        """'as of 14:02' for the tooltip, from the last good sync (or the cached as_of)."""
        when = self.last_sync_wall
        if when is None and self.credits is not None:
            when = formatting.parse_time(self.credits.as_of)
        return f"as of {formatting.clock(when)}"

    def header_text(self) -> str:
        """Exactly what the top bar reads: what can still be spent, and what running jobs hold.

        '7,880 cr · 125,240 held': `available` first (the number the low-balance colour follows, so
        the two always agree), then the credits held by unfinished jobs, which drop shot by shot as
        each shot is charged. With nothing held: '875,000 cr'.
        """
        if self.credits is None:
            if self.connection == "unconfigured":
                return "ACT3: set API key"
            if self.connection == "disabled":
                return "ACT3: offline"
            return "— cr"
        text = formatting.credits(self.credits.available)
        if self.credits.held:
            text += f" · {formatting.credits(self.credits.held, unit=False)} held"
        return text

    def alert_level(self, warn_fraction: float = 0.20, critical_fraction: float = 0.05, custom: int = 0) -> str:
        """'critical', 'warn' or 'ok' for the available balance against the monthly allocation.

        `custom` (credits, 0 = off) is a studio's own warning line; it raises the warning level only.
        """
        c = self.credits
        if c is None or c.monthly_allocation <= 0:
            return "ok"
        if c.available < c.monthly_allocation * critical_fraction:
            return "critical"
        if c.available < c.monthly_allocation * warn_fraction or (custom > 0 and c.available < custom):
            return "warn"
        return "ok"
