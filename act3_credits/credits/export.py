"""The transaction history as CSV rows (no bpy): what Export CSV writes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..core.state import HistoryRow
from ..core.vocabulary import HISTORY_FIELDS

HEADER = HISTORY_FIELDS


def _text(value: object) -> str:
    """A cell a spreadsheet will not run: text starting with = + - @ is kept as text."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(rows: Iterable[HistoryRow]) -> Iterator[list[object]]:
    for r in rows:
        yield [
            r.at,
            r.kind,
            _text(r.shot),
            _text(r.engine),
            _text(r.tier),
            "" if r.duration_s is None else r.duration_s,
            r.credits,
            r.monthly_delta,
            r.bank_delta,
            "" if r.job_id is None else r.job_id,
            _text(r.member),
            _text(r.reason),
            "true" if r.auto else "",
        ]
