"""The typed contract (core/contract.py): what the service answers, parsed once, strict about what the
add-on reads and quiet about what a newer service adds; an event makes a new job, the old one unchanged."""

from __future__ import annotations

import dataclasses

import pytest

from act3_credits.core.client import parse_events
from act3_credits.core.contract import (
    BillingRefilled,
    Job,
    JobStatusChanged,
    Me,
    OtherEvent,
    ServiceEstimate,
    ShotCompleted,
    ShotFailed,
)
from act3_credits.core.state import State
from act3_credits.core.sync import SyncWorker, job_after
from act3_credits.core.vocabulary import Status

# The Job of docs/api.md, with a field this add-on has never heard of.
JOB = {
    "id": 12,
    "name": "seq010 batch",
    "status": "processing",
    "created_at": "2026-11-25T14:02:11Z",
    "updated_at": "2026-11-25T14:03:00Z",
    "member": "Ana (editor)",
    "estimated_credits": 8320,
    "charged_credits": 2080,
    "held": 6240,
    "priority": "rush",
    "shots": [
        {
            "index": i,
            "name": f"sh0{i + 1}0",
            "engine": "veo-3.1",
            "tier": "standard",
            "requested_duration_s": 7.5,
            "duration_s": 8,
            "credits": 2080,
            "status": "completed" if i == 0 else "queued",
            "error": None,
            "completed_at": "2026-11-25T14:03:00Z" if i == 0 else None,
            "gpu": "a100",
        }
        for i in range(4)
    ],
}
BALANCE = {
    "org_id": 1,
    "plan": "pro",
    "total": 872_920,
    "monthly_remaining": 872_920,
    "monthly_allocation": 875_000,
    "rollover_bank": 0,
    "rollover_purchased": 0,
    "rollover_cap": 2_187_500,
    "held": 6_240,
    "available": 866_680,
    "billing_date": "2026-12-01",
    "as_of": "2026-11-25T14:03:00Z",
    "version": 9,
}


def test_a_job_is_read_once_and_gives_back_the_apis_shape_without_the_unknown_fields():
    job = Job.from_json(JOB)
    assert (job.id, job.status, job.held, len(job.shots)) == (12, Status.PROCESSING, 6240, 4)
    assert job.shots[0].status == Status.COMPLETED and job.shots[0].requested_duration_s == 7.5
    out = job.to_json()
    assert "priority" not in out and "gpu" not in out["shots"][0]
    assert out["status"] == "processing" and type(out["status"]) is str  # a plain string for scripts
    assert {k: v for k, v in JOB.items() if k not in ("priority", "shots")} == {
        k: v for k, v in out.items() if k != "shots"
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.status = Status.PAUSED  # type: ignore[misc]


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ({**JOB, "id": "12"}, "job.id is not an integer"),
        ({k: v for k, v in JOB.items() if k != "held"}, "job.held is not an integer"),
        ({**JOB, "status": 3}, "job.status is not a string"),
        ({**JOB, "shots": [{**JOB["shots"][0], "credits": None}]}, "shot.credits is not an integer"),
    ],
)
def test_a_job_without_what_the_add_on_reads_is_refused(broken, why):
    with pytest.raises(TypeError, match=why):
        Job.from_json(broken)


def test_a_status_a_newer_service_added_is_kept_and_is_neither_running_nor_ended():
    from act3_credits.core.vocabulary import ENDED, RUNNING

    job = Job.from_json({**JOB, "status": "archived"})
    assert job.status == "archived" and job.status not in RUNNING and job.status not in ENDED
    assert job.to_json()["status"] == "archived"


def test_the_services_estimate_and_me():
    est = ServiceEstimate.from_json(
        {
            "shots": [
                {
                    "name": "sh010",
                    "engine": "veo-3.1",
                    "tier": "4k",
                    "requested_duration_s": 8,
                    "duration_s": 8,
                    "credits": 8320,
                    "blocked_reason": "Not on Pro.",
                }
            ],
            "total": 8320,
            "available": 875_000,
            "balance_after": 866_680,
            "affordable": False,
            "shortfall": 0,
            "blocked": [{"name": "sh010", "code": "tier_not_allowed", "reason": "Not on Pro."}],
            "currency": "credits",
        }
    )
    assert est.credits_by_name() == {"sh010": 8320}
    assert (est.blocked[0].code, est.affordable, est.balance_after) == ("tier_not_allowed", False, 866_680)
    assert "currency" not in est.to_json()
    with pytest.raises(TypeError, match="estimate.total"):
        ServiceEstimate.from_json({**est.to_json(), "total": "8320"})

    me = Me.from_json(
        {
            "org": {"id": 1, "name": "Blue Studio", "plan": "pro", "seats": 9},
            "member": {"id": 4, "name": "Ana", "role": "editor"},
            "allowed_tiers": ["draft", "standard", "high"],
            "can_spend": True,
            "can_buy": False,
            "payment_method": {"brand": "Visa", "last4": "4242"},
        }
    )
    assert (me.org_name, me.plan, me.role, me.allowed_tiers) == (
        "Blue Studio",
        "pro",
        "editor",
        ("draft", "standard", "high"),
    )
    assert me.to_json()["org"] == {"id": 1, "name": "Blue Studio", "plan": "pro"}
    with pytest.raises(TypeError, match="me.member.role"):
        Me.from_json({"org": {"name": "x"}, "member": {"name": "Ana"}})


def test_each_event_type_is_its_own_value():
    events = parse_events(
        [
            {"seq": 1, "type": "job.status", "at": "t", "data": {"job_id": 12, "status": "paused", "reason": "guard"}},
            {"seq": 2, "type": "job.shot_completed", "data": {"job_id": 12, "shot_index": 1, "shot": "sh020", "credits": 2080, "balance": BALANCE}},
            {"seq": 3, "type": "job.shot_failed", "data": {"job_id": 12, "shot_index": 2, "shot": "sh030", "error": "engine timed out", "balance": BALANCE}},
            {"seq": 4, "type": "billing.refilled", "data": {"period_start": "2026-12-01", "monthly_allocation": 875_000, "rolled_over": 120_000, "expired": 0, "balance": BALANCE}},
            {"seq": 5, "type": "balance.changed", "data": {"reason": "render"}},  # no balance: unreadable, skipped
            {"seq": 6, "type": "org.renamed", "data": {"name": "Blue"}},
        ]
    )  # fmt: skip
    assert [type(e) for e in events] == [JobStatusChanged, ShotCompleted, ShotFailed, BillingRefilled, OtherEvent]
    completed = events[1]
    assert isinstance(completed, ShotCompleted) and completed.balance is not None
    assert completed.balance.available == 866_680
    assert events[4].type == "org.renamed" and events[4].data() == {"name": "Blue"}


def test_an_event_makes_a_new_job_and_leaves_the_old_one_as_it_was():
    job = Job.from_json(JOB)
    done = job_after(job, ShotCompleted(2, 12, 1, "sh020", 2080))
    failed = job_after(done, ShotFailed(3, 12, 2, "sh030", "engine timed out"))
    paused = job_after(failed, JobStatusChanged(4, 12, Status.PAUSED, "guard"))
    assert job.shots[1].status == Status.QUEUED and job.charged_credits == 2080  # untouched
    assert done.charged_credits == 2080 + 2080  # the completed shots' credits
    assert (failed.shots[2].status, failed.shots[2].error, failed.charged_credits) == (
        Status.FAILED,
        "engine timed out",
        4160,
    )
    assert (paused.status, paused.status_reason, paused.shots) == (Status.PAUSED, "guard", failed.shots)
    assert job_after(job, ShotCompleted(5, 12, 9, "sh100", 1)) is job  # a shot it does not have: as it was


def test_the_worker_replaces_a_held_job_instead_of_patching_it():
    worker = SyncWorker(State())
    held = Job.from_json(JOB)
    worker.state.jobs[12] = held
    before = worker.state.change_count
    worker._job_event(ShotCompleted(2, 12, 1, "sh020", 2080))
    assert worker.state.jobs[12] is not held and worker.state.jobs[12].charged_credits == 4160
    assert held.shots[1].status == Status.QUEUED and worker.state.change_count == before + 1
