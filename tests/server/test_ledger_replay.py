"""Replaying POST /v1/jobs with its Idempotency-Key after the job changed answers the job as it is
now (marked as a replay), not the "queued" snapshot stored with the first answer."""

from __future__ import annotations

import pytest
from srv_helpers import Api, Books, count_rows, price, shot

from act3_server.ledger import LedgerError


def test_a_replay_answers_the_job_as_it_is_now(books: Books) -> None:
    ledger = books.ledger
    specs = [shot("sh010"), shot("sh020")]
    first = ledger.create_job(books.editor, "batch", specs, "k1")
    assert not first.replayed and first.body["status"] == "queued"

    ledger.pause(books.editor, first.body["id"])
    paused = ledger.create_job(books.editor, "batch", specs, "k1")
    assert paused.replayed and paused.status == 201 and paused.body["status"] == "paused"

    ledger.resume(books.editor, first.body["id"])
    claim = ledger.claim_next_shot("w")
    assert claim is not None and ledger.complete_shot(claim)
    before = count_rows(ledger.engine)
    rendering = ledger.create_job(books.editor, "batch", specs, "k1")
    assert count_rows(ledger.engine) == before  # a replay writes nothing
    assert rendering.replayed and rendering.body["charged_credits"] == sum(price(s) for s in specs) // 2
    assert [s["status"] for s in rendering.body["shots"]] == ["completed", "queued"]

    ledger.cancel(books.editor, first.body["id"])
    canceled = ledger.create_job(books.editor, "batch", specs, "k1")
    assert canceled.replayed and canceled.body == ledger.get_job(books.editor, first.body["id"])
    assert (canceled.body["status"], canceled.body["held"]) == ("canceled", 0)
    assert canceled.body["id"] == first.body["id"] and canceled.body["created_at"] == first.body["created_at"]

    with pytest.raises(LedgerError) as err:  # the same key with another body is still a conflict
        ledger.create_job(books.editor, "batch", [shot("other")], "k1")
    assert err.value.code == "idempotency_conflict"


def test_a_purchase_replay_is_still_its_first_answer(books: Books) -> None:
    first = books.ledger.purchase(books.owner, "pack-50k", "buy-1")
    books.job(shot())
    again = books.ledger.purchase(books.owner, "pack-50k", "buy-1")
    assert again.replayed and again.body == first.body  # what was bought, and the balance then


def test_a_replay_over_http_is_the_job_now_with_the_replay_header(api: Api) -> None:
    body = {"name": "seq010", "shots": [shot()]}
    first = api.client.post("/v1/jobs", json=body, headers=api.headers("pro", "editor", idem="h1"))
    assert first.status_code == 201 and first.json()["status"] == "queued"
    job_id = first.json()["id"]
    assert api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.headers("pro", "editor")).status_code == 200
    again = api.client.post("/v1/jobs", json=body, headers=api.headers("pro", "editor", idem="h1"))
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == job_id and again.json()["status"] == "canceled" and again.json()["held"] == 0
