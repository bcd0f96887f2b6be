"""`/openapi.json` is the contract a client can generate from: Schemathesis holds the live service to it.

A real `act3-server serve` on SQLite, over HTTP, with a real key (the enterprise org's owner: every
tier, the largest balance). Schemathesis sends the schema's examples, its boundary cases (the
coverage phase: every enum value, each bound and one past it, methods a path does not answer) and
random requests, valid and invalid, to every operation, and checks each answer: no 5xx, a
documented status, a body of the documented schema, the documented headers, and that invalid input
is refused and valid input is not (`positive_data_acceptance`). A few examples per operation and a
fixed seed keep it to a few minutes and make a failure reproducible.

Refusals of well-formed requests that no schema can foresee are expected answers, not violations:
402 (the balance ran out, which the fuzzer's jobs do), a history `cursor` the service did not give
out (400), and for the dev clock 422 `clock_moved_back` (any time before the clock) and
`validation_error` for a date that does not exist (2026-02-30).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.config import SchemathesisConfig
from support.servers import LiveServer, sqlite_url

ACCEPTED = ["2xx", "3xx", "401", "402", "403", "404", "409"]  # Schemathesis' default, plus 402
CONFIG: dict[str, Any] = {
    "seed": 20261130,
    "generation": {"max-examples": 12},
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    # Sequences follow the schema's links (a created job's id into GET, pause, resume, cancel), not
    # guessed ones (a history item's `job_id` is null for a purchase: not a job id to fetch).
    "phases": {"stateful": {"inference": {"algorithms": []}}},
    "operations": [
        {
            # A cursor is opaque: only one this service gave out is one (any other is 400 bad_request).
            "include-path": "/v1/account/credits/history",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "400"]}},
        },
        {
            # A range can be well formed and still empty or too long (to <= from, over 366 days).
            "include-path": "/v1/account/usage",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        },
        {
            "include-path": "/v1/dev/clock",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
        },
    ],
}
HYPOTHESIS = settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
# The long poll may wait up to 30 s; the fuzzer's waits are cut to this (the wait itself is test_live's).
LONGEST_WAIT_S = 0.2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir: Path = tmp_path_factory.mktemp("openapi")
    srv = LiveServer(database_url=sqlite_url(workdir), workdir=workdir)
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def api_schema(server: LiveServer) -> Any:
    schema = schemathesis.openapi.from_url(
        server.root_url + "/openapi.json", config=SchemathesisConfig.from_dict(CONFIG)
    )
    return schema


def _bounded(case: Any) -> None:
    wait = (case.query or {}).get("wait")
    if case.path == "/v1/events" and isinstance(wait, int | float) and not isinstance(wait, bool):
        case.query["wait"] = min(wait, LONGEST_WAIT_S)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # Schemathesis 4.32 renames each operation's subtest through `node._nodeid`, which pytest 9
    # no longer has: give it the id to start from.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@HYPOTHESIS
def test_every_operation_answers_as_its_schema_says(case: Any, server: LiveServer) -> None:
    _bounded(case)
    case.call_and_validate(headers=server.auth("enterprise", "owner"), timeout=10)


def test_sequences_of_calls_answer_as_the_schema_says(api_schema: Any, server: LiveServer) -> None:
    # Stateful: the fuzzer chains calls through the schema's links (a created job's id into GET,
    # pause, resume and cancel of that job), checking every answer on the way.
    answered: list[tuple[str, int]] = []

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            _bounded(case)
            return {"headers": server.auth("enterprise", "owner"), "timeout": 10}

        def after_call(self, response: Any, case: Any) -> None:
            answered.append((case.operation.label, response.status_code))

    run_state_machine_as_test(Workflow, settings=settings(HYPOTHESIS, max_examples=8, stateful_step_count=6))
    # The links were followed: a job was made and then found, paused, resumed or canceled by its id.
    assert ("POST /v1/jobs", 201) in answered
    followed = {label for label, status in answered if label.startswith("POST /v1/jobs/{job_id}/") and status != 404}
    assert followed, answered


def test_the_events_a_client_reads_are_as_the_schema_says(api_schema: Any, server: LiveServer) -> None:
    # Each event type has its own `data` schema: read a job's and a purchase's events through it.
    auth = server.auth("enterprise", "owner")
    start = requests.get(server.url + "/events", headers=auth, timeout=10).json()["last_seq"]
    shot = {"name": "sh010", "engine": "veo-3.1", "tier": "draft", "duration_s": 4}
    job = server.post("/jobs", {"name": "events", "shots": [shot]}, plan="enterprise", idem=uuid.uuid4().hex)
    assert job.status_code == 201, job.text
    assert server.post("/purchases", {"pack_id": "pack-50k"}, plan="enterprise", idem=uuid.uuid4().hex).ok
    deadline = time.monotonic() + 30
    while server.get(f"/jobs/{job.json()['id']}", plan="enterprise").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.05)
    case = api_schema["/v1/events"]["GET"].Case(query={"after": start})
    answer = case.call_and_validate(headers=auth, timeout=10)
    types = [e["type"] for e in answer.json()["events"]]
    assert {"job.status", "balance.changed", "job.shot_completed", "purchase.completed"} <= set(types), types


def test_a_method_a_path_does_not_answer_is_405_with_allow(server: LiveServer) -> None:
    # Starlette tries one route per path; /v1/jobs has two (GET and POST), and Allow names both.
    r = requests.delete(server.url + "/jobs", headers=server.auth(), timeout=10)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    assert r.headers["Allow"] == "GET, POST"
    r = requests.put(server.url + "/me", headers=server.auth(), timeout=10)
    assert (r.status_code, r.headers["Allow"]) == (405, "GET")


def test_the_job_actions_list_the_errors_they_answer(api_schema: Any) -> None:
    # Resuming a job its refill paused first holds what its shots need: a 402 when that is not there
    # (tests/server/test_schedule_topup.py); pause and cancel never hold, so never answer 402.
    paths = api_schema.raw_schema["paths"]
    for action, codes in (("pause", {"403", "404", "409"}), ("resume", {"402", "403", "404", "409"})):
        listed = set(paths[f"/v1/jobs/{{job_id}}/{action}"]["post"]["responses"])
        assert codes <= listed, action
    assert "402" not in paths["/v1/jobs/{job_id}/pause"]["post"]["responses"]
