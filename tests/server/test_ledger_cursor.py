"""A history cursor is opaque but easily forged: every malformed one is a 400, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from srv_helpers import Api, Books

from act3_server.ledger import LedgerError, decode_cursor, encode_cursor


def forged(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def forged_raw(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MALFORMED = [
    "garbage",
    "",
    "=",
    "é",  # not ASCII: base64 refuses it
    forged_raw(b"\xff\xfe"),  # not UTF-8
    forged_raw(b"not json"),
    forged_raw(b"[" * 180 + b"]" * 180),  # nested deeper than anything a cursor holds
    forged(),
    forged("2026-11-25T12:00:00"),
    forged("2026-11-25T12:00:00", 1, 2),
    forged_raw(b'{"at": "2026-11-25T12:00:00", "id": 1}'),
    forged("2026-11-25T12:00:00", 10**25),  # beyond the database's INTEGER
    forged("2026-11-25T12:00:00", -1),
    forged("2026-11-25T12:00:00", 1.5e300),
    forged("2026-11-25T12:00:00", True),
    forged("2026-11-25T12:00:00", "7"),
    forged(7, 1),
    forged(None, 1),
    forged("yesterday", 1),
    forged("2026-13-01T00:00:00", 1),
    forged("0000-01-01T00:00:00", 1),
    # Valid ISO 8601 that cannot be moved to UTC: datetime raises OverflowError, not ValueError.
    forged("0001-01-01T00:00:00+01:00", 1),
    forged("0001-01-01T00:59:59+01:00", 1),
    forged("9999-12-31T23:59:59-01:00", 1),
    forged("9999-12-31T23:00:00-23:59", 1),
]


@pytest.mark.parametrize("cursor", MALFORMED)
def test_a_malformed_cursor_is_a_bad_request(cursor: str) -> None:
    with pytest.raises(LedgerError) as err:
        decode_cursor(cursor)
    assert err.value.code == "bad_request"
    assert err.value.extra["details"] == [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]


def test_a_cursor_nested_past_the_recursion_limit_is_a_bad_request() -> None:
    # Longer than the HTTP layer lets through (500 characters), but the ledger refuses it on its own.
    with pytest.raises(LedgerError) as err:
        decode_cursor(forged_raw(b"[" * 100_000 + b"]" * 100_000))
    assert err.value.code == "bad_request"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=60).map(forged_raw)))
def test_any_string_is_a_cursor_or_a_bad_request(cursor: str) -> None:
    try:
        at, row_id = decode_cursor(cursor)
    except LedgerError as err:
        assert err.code == "bad_request"
    else:
        assert at.tzinfo is None and 0 <= row_id


@settings(max_examples=200, deadline=None)
@given(st.datetimes(timezones=st.timezones()), st.integers())
def test_any_forged_date_and_number_is_a_cursor_or_a_bad_request(at: object, row_id: int) -> None:
    try:
        decode_cursor(forged(at.isoformat(), row_id))  # type: ignore[attr-defined]
    except LedgerError as err:
        assert err.code == "bad_request"


def test_edge_dates_that_are_representable_still_page(books: Books) -> None:
    """The oldest and newest UTC instants are cursors like any other (nothing is before or after them)."""
    ledger = books.ledger
    first = ledger.history(books.org_id, limit=1)
    assert first["items"] and first["next_cursor"] is None
    oldest = forged("0001-01-01T00:00:00+00:00", 1)
    assert ledger.history(books.org_id, cursor=oldest) == {"items": [], "next_cursor": None}
    newest = forged("9999-12-31T23:59:59", 2**31 - 1)
    assert [i["id"] for i in ledger.history(books.org_id, cursor=newest)["items"]] == [first["items"][0]["id"]]
    assert decode_cursor(encode_cursor(*decode_cursor(oldest))) == decode_cursor(oldest)


def test_malformed_cursors_over_http_are_400_bad_request(api: Api) -> None:
    for cursor in MALFORMED:
        if not cursor:
            continue  # `cursor=` is no cursor: the first page
        r = api.client.get("/v1/account/credits/history", params={"cursor": cursor}, headers=api.headers())
        assert r.status_code == 400, (cursor, r.text)
        err = r.json()["error"]
        assert err["code"] == "bad_request" and err["details"][0]["msg"] == "invalid cursor", (cursor, err)
