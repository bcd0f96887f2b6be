"""The JSON the service answers with (docs/api.md), built from rows and account dicts.

No database here: the ledger reads and locks, these functions only shape what it read. Key order
is part of the answer (clients and stored idempotent replays see the same bytes), so each shape is
written once, in the order docs/api.md shows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from act3_credits.core import pricing
from act3_credits.core.vocabulary import HISTORY_FIELDS, Status

from . import billing, rules
from .db import iso, to_db


class OrgLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def plan(self) -> str: ...
    @property
    def billing_day(self) -> int: ...


def credits_json(org: OrgLike, acct: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """`GET /v1/credits` and every `balance` inside an answer or an event."""
    total = rules.total(acct)
    return {
        "org_id": org.id,
        "plan": org.plan,
        "total": total,
        "monthly_remaining": acct["monthly_remaining"],
        "monthly_allocation": acct["monthly_allocation"],
        "rollover_bank": acct["bank_rolled"] + acct["bank_purchased"],
        "rollover_purchased": acct["bank_purchased"],
        "rollover_cap": pricing.plan(org.plan).rollover_cap,
        "held": acct["held"],
        "available": total - acct["held"],
        "billing_date": billing.next_billing_date(now.date(), org.billing_day).isoformat(),
        "as_of": iso(now),
        "version": acct["version"],
    }


def shot_json(s: Any) -> dict[str, Any]:
    """A shot of a job (a `shots` row)."""
    return {
        "index": s.idx,
        "name": s.name,
        "engine": s.engine,
        "tier": s.tier,
        "requested_duration_s": s.requested_duration_s,
        "duration_s": s.duration_s,
        "credits": s.credits,
        "status": s.status,
        "error": s.error,
        "completed_at": iso(s.completed_at),
    }


def job_json(j: Any, shots: list[dict[str, Any]]) -> dict[str, Any]:
    """A job (a `jobs` row) with its shots (from `shot_json`); `id` is its number in its org."""
    return {
        "id": j.number,
        "name": j.name,
        "project": j.project,  # budgets: the project the job counts against (None: none)
        "status": j.status,
        "created_at": iso(j.created_at),
        "updated_at": iso(j.updated_at),
        "member": j.member_name,
        "estimated_credits": j.estimated_credits,
        "charged_credits": j.charged_credits,
        "held": j.held,
        "shots": shots,
    }


def queued_job_json(
    number: int,
    name: str,
    member: str,
    total: int,
    now: datetime,
    shot_rows: Sequence[Mapping[str, Any]],
    project: str | None = None,
) -> dict[str, Any]:
    """A job just created, from the rows the hold inserted (the same keys as `job_json`)."""
    stamp = iso(now)
    return {
        "id": number,
        "name": name,
        "project": project,
        "status": Status.QUEUED,
        "created_at": stamp,
        "updated_at": stamp,
        "member": member,
        "estimated_credits": total,
        "charged_credits": 0,
        "held": total,
        "shots": [
            {
                "index": r["idx"],
                "name": r["name"],
                "engine": r["engine"],
                "tier": r["tier"],
                "requested_duration_s": r["requested_duration_s"],
                "duration_s": r["duration_s"],
                "credits": r["credits"],
                "status": Status.QUEUED,
                "error": None,
                "completed_at": None,
            }
            for r in shot_rows
        ],
    }


def purchase_json(
    number: int, pack: pricing.CreditPack, brand: str, last4: str, now: datetime, balance: dict[str, Any]
) -> dict[str, Any]:
    """`POST /v1/purchases`: the purchase and the balance after it."""
    return {
        "purchase": {
            "id": number,
            "pack_id": pack.id,
            "credits": pack.credits,
            "price_cents": pack.price_cents,
            "currency": pack.currency,
            "payment_method": {"brand": brand, "last4": last4},
            "at": iso(now),
        },
        "balance": balance,
    }


def event_json(row: Any) -> dict[str, Any]:
    """An `events` row as `GET /v1/events` lists it."""
    return {"seq": row.seq, "type": row.type, "at": iso(row.at), "data": json.loads(row.data)}


HISTORY_KEYS = ("id", *HISTORY_FIELDS)


def iso_z(dt: datetime) -> str:
    """A stored time as the API writes it (`2027-01-01T00:00:00Z`)."""
    # Stored times are naive UTC; isoformat is several times cheaper than strftime, for 200 rows.
    return dt.isoformat(timespec="seconds") + "Z" if dt.tzinfo is None else str(iso(dt))


def history_json(rows: Sequence[Any], limit: int) -> dict[str, Any]:
    """A history page from up to `limit + 1` rows (columns in HISTORY_KEYS' order): the extra
    row only says there is a next page, whose cursor names the page's last row."""
    more = len(rows) > limit
    rows = rows[:limit]
    items = []
    for row in rows:
        item = dict(zip(HISTORY_KEYS, row, strict=True))
        item["at"] = iso_z(row[1])
        item["auto"] = bool(item["auto"])  # NULL on every item but auto top-up's purchases
        items.append(item)
    return {"items": items, "next_cursor": encode_cursor(rows[-1].at, rows[-1].id) if more else None}


def encode_cursor(at: datetime, row_id: int) -> str:
    """The opaque keyset cursor for the row (at, id); the ledger's `decode_cursor` reads it back."""
    raw = json.dumps([to_db(at).isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
