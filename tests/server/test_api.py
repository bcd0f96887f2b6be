"""The HTTP contract (docs/api.md) on SQLite and PostgreSQL, with the real app in-process."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from srv_helpers import Api, ManualClock, count_rows, make_books
from support.servers import run_cli

from act3_credits.core import pricing
from act3_server import db
from act3_server.auth import hash_key
from act3_server.ledger import Ledger
from act3_server.server import Biller, build_service

SHOT = {"name": "sh010", "engine": "veo-3.1", "tier": "standard", "duration_s": 7.5}


def job_body(*shots: dict, name: str = "seq010") -> dict:
    return {"name": name, "shots": list(shots) or [SHOT]}


BAD_JOBS = [
    # (description, raw body, status, code)
    ("malformed JSON", "{bad", 400, "malformed_json"),
    ("truncated JSON", '{"name": "x", "shots": [', 400, "malformed_json"),
    ("not an object", "[]", 422, "validation_error"),
    ("shots not a list", json.dumps({"name": "x", "shots": "sh010"}), 422, "validation_error"),
    ("duration as text", json.dumps(job_body(dict(SHOT, duration_s="8"))), 422, "validation_error"),
    ("duration as bool", json.dumps(job_body(dict(SHOT, duration_s=True))), 422, "validation_error"),
    ("duration null", json.dumps(job_body(dict(SHOT, duration_s=None))), 422, "validation_error"),
    ("engine as number", json.dumps(job_body(dict(SHOT, engine=3))), 422, "validation_error"),
    (
        "missing tier",
        json.dumps(job_body({"name": "a", "engine": "veo-3.1", "duration_s": 8})),
        422,
        "validation_error",
    ),
    ("shot name too long", json.dumps(job_body(dict(SHOT, name="x" * 201))), 422, "validation_error"),
    ("negative duration", json.dumps(job_body(dict(SHOT, duration_s=-4))), 422, "invalid_duration"),
    ("zero duration", json.dumps(job_body(dict(SHOT, duration_s=0))), 422, "invalid_duration"),
    ("huge duration", json.dumps(job_body(dict(SHOT, duration_s=1e12))), 422, "invalid_duration"),
    ("NaN duration", json.dumps(job_body(dict(SHOT, duration_s=float("nan")))), 422, "invalid_duration"),
    ("infinite duration", json.dumps(job_body(dict(SHOT, duration_s=float("inf")))), 422, "invalid_duration"),
    ("unknown engine", json.dumps(job_body(dict(SHOT, engine="sora-9"))), 422, "unknown_engine"),
    ("unknown tier", json.dumps(job_body(dict(SHOT, tier="ultra"))), 422, "unknown_tier"),
    ("empty batch", json.dumps({"name": "x", "shots": []}), 422, "empty_batch"),
    ("oversized batch", json.dumps(job_body(*[SHOT] * (pricing.MAX_SHOTS_PER_BATCH + 1))), 422, "batch_too_large"),
]


def test_bad_job_input_is_refused_with_its_code_and_writes_nothing(api: Api) -> None:
    before = count_rows(api.ledger.engine)
    credits_before = api.client.get("/v1/account/credits", headers=api.headers()).json()
    for what, raw, status, code in BAD_JOBS:
        for path in ("/v1/jobs", "/v1/estimates"):
            r = api.client.post(
                path,
                content=raw,
                headers={**api.headers(role="editor", idem=f"k-{what}"), "Content-Type": "application/json"},
            )
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (what, path, r.text)
            assert r.json()["error"]["message"] and "Traceback" not in r.text
    assert count_rows(api.ledger.engine) == before
    after = api.client.get("/v1/account/credits", headers=api.headers()).json()
    assert after["version"] == credits_before["version"] and after["total"] == credits_before["total"]


def test_validation_error_lists_details(api: Api) -> None:
    r = api.client.post("/v1/estimates", json={"shots": [{"name": "a", "engine": "veo-3.1"}]}, headers=api.headers())
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "validation_error"
    assert {"loc": ["body", "shots", "0", "tier"], "msg": "Field required"} in err["details"]


BAD_QUERIES = [
    "/v1/jobs?limit=0",
    "/v1/jobs?limit=201",
    "/v1/jobs?status=exploded",
    "/v1/jobs/abc",
    "/v1/account/credits/history?limit=500",
    "/v1/events?after=-1",
    "/v1/events?after=0&wait=31",
    "/v1/events?wait=soon",
]


def test_bad_query_parameters_are_422(api: Api) -> None:
    for path in BAD_QUERIES:
        r = api.client.get(path, headers=api.headers())
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (path, r.text)


def _cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


HOSTILE_GETS = [
    # (path, status): numbers beyond the database's INTEGER and NUL characters must never reach it
    ("/v1/jobs/2147483648", 404),
    ("/v1/jobs/99999999999999999999999", 404),
    ("/v1/jobs/-1", 404),
    ("/v1/events?after=2147483648", 422),
    ("/v1/events?after=99999999999999999999999&wait=1", 422),
    ("/v1/events?after=-5", 422),
    ("/v1/events?after=0&wait=1e9", 422),
    ("/v1/events?after=0&wait=nan", 422),
    ("/v1/account/credits/history?limit=-1", 422),
    ("/v1/account/credits/history?cursor=" + _cursor("2026-11-25T12:00:00", 10**25), 400),
    ("/v1/account/credits/history?cursor=" + _cursor("2026-11-25T12:00:00", 1.5e300), 400),
    ("/v1/account/credits/history?cursor=" + _cursor(7, 1), 400),
    ("/v1/account/credits/history?cursor=garbage", 400),
    ("/v1/account/credits/history?cursor=" + _cursor("0001-01-01T00:00:00+01:00", 1), 400),
    ("/v1/account/credits/history?shot=%00", 422),
    ("/v1/account/credits/history?tier=a%00", 422),
    ("/v1/account/credits/history?kind=%00", 422),
    ("/v1/me/", 404),  # no redirect to /v1/me: one answer, in the service's own error shape
    ("/v1/account/credits/", 404),
]


def test_hostile_input_is_a_4xx_never_a_500(api: Api) -> None:
    before = count_rows(api.ledger.engine)
    for path, status in HOSTILE_GETS:
        r = api.client.get(path, headers=api.headers())
        assert r.status_code == status and r.json()["error"]["code"], (path, r.text)
    for path in ("/v1/jobs/2147483648/pause", "/v1/jobs/99999999999999999999999/cancel"):
        r = api.client.post(path, headers=api.headers())
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    nul_bodies = [
        ("/v1/jobs", job_body(dict(SHOT, name="a\x00b"))),
        ("/v1/jobs", job_body(name="seq\x00")),
        ("/v1/purchases", {"pack_id": "pack-50k\x00"}),
    ]
    for path, body in nul_bodies:
        r = api.client.post(path, json=body, headers=api.headers(idem="nul"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (path, r.text)
    # JSON's "\ud800" decodes to a lone surrogate, which has no UTF-8 and so no row in either database.
    surrogate_bodies = [
        ("/v1/jobs", {**job_body(), "project": "\ud800"}),
        ("/v1/jobs", {**job_body(), "project": "ok\udc00", "start": "next_period"}),
        ("/v1/jobs", job_body(name="seq\ud800")),
        ("/v1/estimates", {"shots": [SHOT], "project": "\ud800"}),
        ("/v1/estimates", {"shots": [SHOT], "project": "\udfff", "when": "next_period"}),
    ]
    for path, body in surrogate_bodies:
        raw = json.dumps(body).encode()  # ASCII, with the surrogate as a \u escape
        r = api.client.post(path, content=raw, headers={**api.headers(idem="sur"), "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (path, r.text)
    r = api.client.post("/v1/purchases", json={"pack_id": "pack-50k"}, headers=api.headers(idem="a\x00"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_required"
    for raw in (b'{"name": "x", "shots": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"name": "\xff"}'):
        r = api.client.post(
            "/v1/jobs", content=raw, headers={**api.headers(idem="deep"), "Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    # Unicode names are fine.
    r = api.client.post(
        "/v1/jobs", json=job_body(dict(SHOT, name="ショット🎬 é"), name="シーン"), headers=api.headers(idem="u")
    )
    assert r.status_code == 201 and r.json()["shots"][0]["name"] == "ショット🎬 é"
    claim = api.ledger.claim_next_shot("w")
    assert claim is not None and api.ledger.complete_shot(claim)
    items = api.client.get("/v1/account/credits/history?shot=ショット", headers=api.headers()).json()["items"]
    assert [i["shot"] for i in items] == ["ショット🎬 é"]
    rows = count_rows(api.ledger.engine)
    assert rows["jobs"] == before["jobs"] + 1 and rows["purchases"] == before["purchases"]


def test_an_oversized_body_is_413_and_never_read_whole(api: Api) -> None:
    before = count_rows(api.ledger.engine)
    shots = [dict(SHOT, name=f"sh{i}") for i in range(20_000)]  # about 1.6 MB of JSON
    big = json.dumps(job_body(*shots)).encode()
    assert len(big) > 1 << 20
    headers = {**api.headers(idem="big"), "Content-Type": "application/json"}
    r = api.client.post("/v1/jobs", content=big, headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text

    def chunks():  # no Content-Length: the limit counts what arrives
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    r = api.client.post("/v1/jobs", content=chunks(), headers=headers)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    assert count_rows(api.ledger.engine) == before


def test_idempotency_key_is_required_and_bounded(api: Api) -> None:
    before = count_rows(api.ledger.engine)
    for headers in (api.headers(), api.headers(idem=""), api.headers(idem="k" * 201)):
        for path, body in (("/v1/jobs", job_body()), ("/v1/purchases", {"pack_id": "pack-50k"})):
            r = api.client.post(path, json=body, headers=headers)
            assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_required"
    assert count_rows(api.ledger.engine) == before


def test_idempotent_job_replays_and_conflicts_over_http(api: Api) -> None:
    h = api.headers(role="editor", idem="batch-42")
    first = api.client.post("/v1/jobs", json=job_body(), headers=h)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    rows = count_rows(api.ledger.engine)
    again = api.client.post("/v1/jobs", json=job_body(), headers=h)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert count_rows(api.ledger.engine) == rows
    other = api.client.post("/v1/jobs", json=job_body(dict(SHOT, duration_s=4)), headers=h)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    # Keys are per organisation: another org may use the same key for its own job.
    assert (
        api.client.post("/v1/jobs", json=job_body(), headers=api.headers("starter", "editor", "batch-42")).status_code
        == 201
    )
    assert api.client.get("/v1/account/credits", headers=api.headers()).json()["held"] == 2_080


def test_purchase_over_http(api: Api) -> None:
    packs = api.client.get("/v1/credit-packs", headers=api.headers(role="viewer")).json()
    assert [p["id"] for p in packs["packs"]] == ["pack-50k", "pack-250k", "pack-1m"]
    assert packs["packs"][0]["price"] == "$100" and packs["payment_method"] == {"brand": "Visa", "last4": "4242"}
    r = api.client.post("/v1/purchases", json={"pack_id": "pack-50k"}, headers=api.headers(role="editor", idem="p1"))
    assert r.status_code == 403 and "owner or an admin" in r.json()["error"]["message"]
    r = api.client.post("/v1/purchases", json={"pack_id": "pack-9"}, headers=api.headers(idem="p1"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_pack"
    r = api.client.post("/v1/purchases", json={"pack_id": 50}, headers=api.headers(idem="p1"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = api.client.post("/v1/purchases", json={"pack_id": "pack-250k"}, headers=api.headers(idem="p1"))
    assert r.status_code == 201
    body = r.json()
    assert body["balance"]["total"] == 875_000 + 250_000 and body["purchase"]["price_cents"] == 47_500
    replay = api.client.post("/v1/purchases", json={"pack_id": "pack-250k"}, headers=api.headers(idem="p1"))
    assert replay.json() == body and replay.headers["Idempotent-Replayed"] == "true"
    assert api.client.get("/v1/account/credits", headers=api.headers()).json()["rollover_purchased"] == 250_000


def test_auth_errors_and_unknown_paths(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer act3_nope"}, {"Authorization": f"Basic {api.key()}"}):
        r = api.client.get("/v1/me", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = api.client.get("/v1/nothing-here", headers=api.headers())
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.client.get("/openapi.json").status_code == 200


def test_me_roles_and_tiers(api: Api) -> None:
    expect = {"owner": (True, True), "admin": (True, True), "editor": (True, False), "viewer": (False, False)}
    for role, (spend, buy) in expect.items():
        me = api.client.get("/v1/me", headers=api.headers("starter", role)).json()
        assert (me["member"]["role"], me["can_spend"], me["can_buy"]) == (role, spend, buy)
        assert me["allowed_tiers"] == ["draft", "standard", "high"]
    ent = api.client.get("/v1/me", headers=api.headers("enterprise", "viewer")).json()
    assert ent["allowed_tiers"] == ["draft", "standard", "high", "4k"] and ent["org"]["plan"] == "enterprise"
    assert ent["member"]["name"] == "Dev (viewer)"


def test_pricing_etag_and_304(api: Api) -> None:
    r = api.client.get("/v1/pricing", headers=api.headers())
    assert r.status_code == 200 and r.headers["ETag"]
    card = pricing.RateCard.from_json(r.json())
    assert card.price("veo-3.1", "standard", 7.5).credits == 2_080
    assert r.json()["plan"] == "pro" and "4k" not in r.json()["allowed_tiers"]
    again = api.client.get("/v1/pricing", headers={**api.headers(), "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    stale = api.client.get("/v1/pricing", headers={**api.headers(), "If-None-Match": '"old"'})
    assert stale.status_code == 200
    ent = api.client.get("/v1/pricing", headers={**api.headers("enterprise"), "If-None-Match": r.headers["ETag"]})
    assert ent.status_code == 200 and ent.json()["plan"] == "enterprise"  # the tag covers the plan too


def test_estimate_shape_and_4k_block_over_http(api: Api) -> None:
    body = {"shots": [SHOT, dict(SHOT, name="sh020", tier="4k", duration_s=4)]}
    est = api.client.post("/v1/estimates", json=body, headers=api.headers(role="editor")).json()
    assert [s["credits"] for s in est["shots"]] == [2_080, 4_160]
    assert est["shots"][0]["requested_duration_s"] == 7.5 and est["shots"][0]["duration_s"] == 8
    assert (est["total"], est["available"], est["balance_after"], est["shortfall"]) == (6_240, 875_000, 868_760, 0)
    assert est["affordable"] is False and est["blocked"][0]["code"] == "tier_not_allowed"
    r = api.client.post("/v1/jobs", json={"name": "x", **body}, headers=api.headers(role="editor", idem="4k"))
    assert r.status_code == 403 and r.json()["error"] | {"message": ""} == {
        "code": "tier_not_allowed",
        "message": "",
        "tier": "4k",
        "plan": "pro",
    }
    r = api.client.post("/v1/jobs", json={"name": "x", **body}, headers=api.headers("enterprise", "editor", "4k"))
    assert r.status_code == 201 and r.json()["estimated_credits"] == 6_240


def test_viewer_and_other_org_over_http(api: Api) -> None:
    r = api.client.post("/v1/jobs", json=job_body(), headers=api.headers(role="viewer", idem="v"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    job = api.client.post("/v1/jobs", json=job_body(), headers=api.headers(role="editor", idem="e")).json()
    for method, path in (("get", ""), ("post", "/pause"), ("post", "/cancel"), ("post", "/resume")):
        r = getattr(api.client, method)(f"/v1/jobs/{job['id']}{path}", headers=api.headers("starter", "owner"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.client.get("/v1/jobs", headers=api.headers("starter")).json() == {"jobs": []}
    listed = api.client.get("/v1/jobs?status=queued", headers=api.headers(role="viewer")).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    r = api.client.post(f"/v1/jobs/{job['id']}/resume", headers=api.headers())
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_state"


def test_402_reports_required_and_available(api: Api) -> None:
    shots = [dict(SHOT, engine="seedance-2.0", tier="high", duration_s=15)] * 34  # 34 x 7,350 = 249,900
    r = api.client.post("/v1/jobs", json={"name": "big", "shots": shots}, headers=api.headers("starter", "editor", "b"))
    err = r.json()["error"]
    assert r.status_code == 402 and err["code"] == "insufficient_credits"
    assert (err["required_credits"], err["current_balance"]) == (249_900, 245_000)
    # The add-on's own wording of a shortfall: 249,900 - 245,000 = 4,900 short.
    assert err["message"] == "Not enough credits: this needs 249,900 cr, 4,900 cr more than the 245,000 cr available."


def test_history_over_http(api: Api) -> None:
    api.client.post("/v1/purchases", json={"pack_id": "pack-50k"}, headers=api.headers(idem="h1"))
    page = api.client.get("/v1/account/credits/history?limit=1", headers=api.headers()).json()
    assert page["items"][0]["kind"] == "purchase" and page["items"][0]["credits"] == 50_000
    nxt = api.client.get(f"/v1/account/credits/history?limit=1&cursor={page['next_cursor']}", headers=api.headers())
    assert nxt.json()["items"][0]["kind"] == "refill" and nxt.json()["next_cursor"] is None
    only = api.client.get("/v1/account/credits/history?kind=refill", headers=api.headers()).json()["items"]
    assert [i["kind"] for i in only] == ["refill"]


def test_dev_clock_moves_forward_only_and_refills(api: Api) -> None:
    # It moves every organisation's clock: an editor's or a viewer's key may not, and nothing moves.
    for role in ("editor", "viewer"):
        r = api.client.post("/v1/dev/clock", json={"now": "2031-03-01T00:00:01Z"}, headers=api.headers(role=role))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    before = api.client.get("/v1/account/credits", headers=api.headers("starter")).json()["billing_date"]
    assert before < "2031-01-01"
    r = api.client.post("/v1/dev/clock", json={"now": "2031-03-01T00:00:01Z"}, headers=api.headers())
    assert r.status_code == 200 and r.json()["now"] == "2031-03-01T00:00:01Z"
    credits = api.client.get("/v1/account/credits", headers=api.headers("starter")).json()
    assert credits["billing_date"] == "2031-04-01" and credits["rollover_bank"] == 612_500  # capped
    r = api.client.post("/v1/dev/clock", json={"now": "2030-01-01T00:00:00Z"}, headers=api.headers())
    assert r.status_code == 422 and r.json()["error"]["code"] == "clock_moved_back"
    r = api.client.post("/v1/dev/clock", json={"now": "yesterday"}, headers=api.headers())
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    # The year 9000 in UTC, whatever the offset says (8999-12-31 at -14:00 is 9000-01-01 in UTC).
    for late in ("9999-12-31T23:59:59Z", "8999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-14:00"):
        r = api.client.post("/v1/dev/clock", json={"now": late}, headers=api.headers())
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", late
    assert api.client.get("/v1/account/credits", headers=api.headers()).status_code == 200


def test_a_billing_date_reaches_a_waiting_long_poll_without_anyone_asking(api: Api) -> None:
    """The refill happens at the billing date, not at the next request for that organisation."""
    last = api.client.get("/v1/events", headers=api.headers("starter")).json()["last_seq"]
    due = api.client.get("/v1/account/credits", headers=api.headers("starter")).json()["billing_date"]
    r = api.client.post("/v1/dev/clock", json={"now": f"{due}T00:00:05Z"}, headers=api.headers())
    assert r.status_code == 200
    events = api.client.get(f"/v1/events?after={last}&wait=0", headers=api.headers("starter")).json()["events"]
    refilled = [e for e in events if e["type"] == "billing.refilled"]
    assert len(refilled) == 1
    data = refilled[0]["data"]
    # Nothing was spent: 245,000 unused roll into the bank (cap 612,500) and the month refills.
    assert (data["monthly_allocation"], data["rolled_over"], data["expired"]) == (245_000, 245_000, 0)
    assert data["balance"]["total"] == 490_000 and data["balance"]["billing_date"] > due


def test_the_biller_applies_due_refills_in_the_background(ledger: Ledger, clock: ManualClock) -> None:
    books = make_books(ledger, clock, "starter")
    before = ledger.credits(books.org_id)
    clock.set(datetime.fromisoformat(before["billing_date"] + "T00:00:01+00:00"))
    biller = Biller(ledger, interval_s=0.05)
    biller.start()
    try:
        deadline = time.monotonic() + 10
        while ledger.account_row(books.org_id)["bank_rolled"] != 245_000:
            assert time.monotonic() < deadline, "the biller never refilled"
            time.sleep(0.02)
    finally:
        biller.stop()
    after = ledger.credits(books.org_id)
    assert (after["monthly_remaining"], after["rollover_bank"]) == (245_000, 245_000)
    assert after["billing_date"] > before["billing_date"]
    assert len(ledger.refill_due(books.org_id)) == 0  # once per period, whoever got there first


def test_dev_clock_is_404_without_the_flag(database_url: str) -> None:
    from fastapi.testclient import TestClient

    from act3_server.demo import init_demo

    service = build_service(database_url, dev_clock=False, run_jobs=False)
    key = init_demo(service.ledger)["orgs"][0]["keys"]["owner"]
    with TestClient(service.app) as client:
        r = client.post(
            "/v1/dev/clock", json={"now": "2031-01-01T00:00:00Z"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert "/v1/dev/clock" not in client.get("/openapi.json").json()["paths"]
    service.engine.dispose()


def test_openapi_describes_every_endpoint(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/v1/me", "get"),
        ("/v1/account/credits", "get"),
        ("/v1/account/credits/history", "get"),
        ("/v1/pricing", "get"),
        ("/v1/estimates", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/pause", "post"),
        ("/v1/jobs/{job_id}/resume", "post"),
        ("/v1/jobs/{job_id}/cancel", "post"),
        ("/v1/events", "get"),
        ("/v1/credit-packs", "get"),
        ("/v1/purchases", "post"),
        ("/v1/dev/clock", "post"),
    ]:
        assert method in paths[path], path


def test_an_unexpected_error_is_a_plain_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(org_id: int) -> dict:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.ledger, "credits", boom)
    r = api.client.get("/v1/account/credits", headers=api.headers())
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text


def dump_everything(engine) -> str:
    with db.read_tx(engine) as conn:
        return "\n".join(repr(row) for table in db.metadata.sorted_tables for row in conn.execute(select(table)))


def test_keys_are_hashed_at_rest_and_keys_create_prints_a_working_random_key(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    keys = [k for org in api.orgs["orgs"] for k in org["keys"].values()]
    made = [run_cli("keys", "create", "--database", database_url, "--org", "2", "--role", "editor").stdout.strip()]
    made.append(
        run_cli(
            "keys", "create", "--database", database_url, "--org", "2", "--role", "viewer", "--name", "Eve"
        ).stdout.strip()
    )
    assert made[0] != made[1] and all(k.startswith("act3_") for k in made)
    for key, role in zip(made, ("editor", "viewer"), strict=True):
        me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
        assert me["member"]["role"] == role and me["org"]["id"] == 2
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {made[1]}"}).json()["member"]["name"] == "Eve"
    everything = dump_everything(api.ledger.engine)
    for key in keys + made:
        assert key not in everything
        assert hash_key(key) in everything
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///") :])
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert all(key.encode() not in raw for key in keys + made)


def test_init_demo_twice_prints_the_same_keys_and_changes_nothing(database_url: str) -> None:
    first = run_cli("init-demo", "--database", database_url).stdout
    engine = db.make_engine(database_url, pool_size=1)
    rows = count_rows(engine)
    with db.read_tx(engine) as conn:
        n_keys = len(conn.execute(select(db.api_keys)).all())
    second = run_cli("init-demo", "--database", database_url).stdout
    assert first == second
    orgs = json.loads(first)["orgs"]
    assert [o["plan"] for o in orgs] == ["starter", "pro", "enterprise"]
    assert all(set(o["keys"]) == {"owner", "admin", "editor", "viewer"} for o in orgs)
    assert count_rows(engine) == rows
    with db.read_tx(engine) as conn:
        assert len(conn.execute(select(db.api_keys)).all()) == n_keys == 12
    engine.dispose()


def test_billing_run_cli_applies_due_refills_once(database_url: str) -> None:
    orgs = json.loads(run_cli("init-demo", "--database", database_url).stdout)["orgs"]
    first = json.loads(run_cli("billing", "run", "--database", database_url, "--at", "2031-01-01T00:00:00Z").stdout)
    assert len(first["applied"]) > 0 and {a["org_id"] for a in first["applied"]} == {o["id"] for o in orgs}
    again = json.loads(run_cli("billing", "run", "--database", database_url, "--at", "2031-01-01T00:00:00Z").stdout)
    assert again == {"applied": []}
