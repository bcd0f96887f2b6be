"""Project budgets and member caps (docs/api.md, "Budgets and caps") on SQLite and PostgreSQL.

Prices by hand: veo-3.1 standard 8 s is 8 s x 260 cr/s = 2,080 credits a shot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from srv_helpers import Api, Books, count_rows, shot

from act3_server import db
from act3_server.ledger import LedgerError

SHOT = 2_080


def job(books: Books, project: str | None, n: int, role: str = "editor", key: str | None = None) -> dict[str, Any]:
    shots = [shot(f"{project}-{i}") for i in range(n)]
    return books.ledger.create_job(books.actors[role], "batch", shots, key, project=project).body


def refused(books: Books, project: str | None, n: int, role: str = "editor") -> LedgerError:
    before, acct = count_rows(books.ledger.engine), books.account()
    with pytest.raises(LedgerError) as err:
        job(books, project, n, role, key="refused")
    assert count_rows(books.ledger.engine) == before and books.account() == acct  # nothing written
    return err.value


def budgets(books: Books) -> list[dict[str, Any]]:
    return list(books.ledger.budgets.list_budgets(books.actors["viewer"])["budgets"])


def job_events(books: Books, number: int) -> list[tuple[str, Any]]:
    return [
        (e["data"]["status"], e["data"]["reason"])
        for e in books.ledger.events_after(books.org_id, 0)
        if e["type"] == "job.status" and e["data"]["job_id"] == number
    ]


def test_a_refuse_budget_refuses_the_job_that_would_cross_it_and_writes_nothing(books: Books) -> None:
    books.ledger.budgets.put(books.owner, "spot", 5_000, "billing_period", "refuse")
    first = job(books, "spot", 1)
    assert (first["project"], first["status"], first["held"]) == ("spot", "queued", 2_080)
    assert "warnings" not in first
    err = refused(books, "spot", 2)  # 2,080 held + 4,160 > 5,000
    assert err.code == "budget_exceeded"
    assert err.extra == {"project": "spot", "budget": 5_000, "spent": 0, "held": 2_080, "needed": 4_160}
    assert "leave 2,920" in err.message and "needs 4,160" in err.message
    job(books, "spot", 1)  # 2,080 + 2,080 = 4,160 fits
    job(books, "other", 3)  # another project, and no project at all, are not this budget's business
    job(books, None, 3)
    assert books.run_all() == [SHOT] * 8
    assert budgets(books) == [
        {
            "project": "spot",
            "credits": 5_000,
            "period": "billing_period",
            "action": "refuse",
            "spent": 4_160,
            "held": 0,
            "left": 840,
        }
    ]
    assert refused(books, "spot", 1).extra["spent"] == 4_160  # 4,160 + 2,080 > 5,000: still refused


def test_a_pause_budget_stops_the_job_before_the_shot_that_would_cross(books: Books) -> None:
    books.ledger.budgets.put(books.owner, "spot", 5_000, "billing_period", "pause")
    j = job(books, "spot", 3)  # 6,240: shots 1 and 2 make 4,160, the third would make 6,240 > 5,000
    assert (j["status"], j["held"]) == ("queued", 6_240)
    assert j["warnings"] == [
        {
            "code": "budget_pause",
            "message": j["warnings"][0]["message"],
            "project": "spot",
            "budget": 5_000,
            "spent": 0,
            "held": 0,
            "needed": 6_240,
        }
    ]
    assert "pauses before shot 3" in j["warnings"][0]["message"]
    assert books.run_all() == [SHOT, SHOT]
    now = books.ledger.get_job(books.editor, j["id"])
    assert (now["status"], now["charged_credits"], now["held"]) == ("paused", 4_160, 2_080)
    assert job_events(books, j["id"])[-1] == ("paused", "budget")
    books.ledger.resume(books.editor, j["id"])  # someone decided to go on
    assert books.run_all() == [SHOT]
    assert books.ledger.get_job(books.editor, j["id"])["status"] == "completed"
    assert budgets(books)[0]["spent"] == 6_240 and budgets(books)[0]["left"] == -1_240
    books.assert_books_balance()


def test_a_pause_budget_already_used_up_pauses_the_job_at_once(books: Books) -> None:
    books.ledger.budgets.put(books.owner, "spot", 1_000, "total", "pause")
    j = job(books, "spot", 2)
    assert (j["status"], j["held"]) == ("paused", 4_160)
    assert job_events(books, j["id"]) == [("paused", "budget")]
    assert books.run_all() == []
    books.ledger.resume(books.editor, j["id"])
    assert books.run_all() == [SHOT, SHOT]


def test_a_warn_budget_accepts_the_job_with_a_warning(books: Books) -> None:
    books.ledger.budgets.put(books.actors["admin"], "spot", 3_000, "billing_period", "warn")
    assert "warnings" not in job(books, "spot", 1)
    j = job(books, "spot", 1, key="warned")  # 2,080 + 2,080 > 3,000
    assert [w["code"] for w in j["warnings"]] == ["budget_warning"]
    assert (j["warnings"][0]["held"], j["warnings"][0]["needed"]) == (2_080, 2_080)
    again = books.ledger.create_job(books.editor, "batch", [shot("spot-0")], "warned", project="spot")
    assert again.replayed and again.body["warnings"] == j["warnings"]  # a replay says it again
    assert books.run_all() == [SHOT, SHOT]


def test_a_billing_period_budget_starts_again_at_the_refill_and_a_total_one_does_not(books: Books) -> None:
    for project, period in (("monthly", "billing_period"), ("ever", "total")):
        books.ledger.budgets.put(books.owner, project, 3_000, period, "refuse")
        job(books, project, 1)
        assert refused(books, project, 1).code == "budget_exceeded"
    books.run_all()
    books.clock.set(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))  # past the billing date, 1 December
    job(books, "monthly", 1)
    assert refused(books, "ever", 1).extra == {
        "project": "ever",
        "budget": 3_000,
        "spent": 2_080,
        "held": 0,
        "needed": 2_080,
    }
    by_project = {b["project"]: (b["spent"], b["held"], b["left"]) for b in budgets(books)}
    assert by_project == {"ever": (2_080, 0, 920), "monthly": (0, 2_080, 920)}


def test_a_member_cap_counts_charged_and_held_and_refuses_past_it(books: Books) -> None:
    editor = books.editor
    answer = books.ledger.budgets.set_cap(books.owner, editor.member_id, 5_000)
    assert answer == {
        "id": editor.member_id,
        "name": "Cleo (editor)",
        "role": "editor",
        "cap": {"credits_per_period": 5_000, "spent": 0, "held": 0, "left": 5_000, "period_start": "2026-11-01"},
    }
    job(books, None, 1)
    books.run_all()
    job(books, "spot", 1)  # 2,080 charged + 2,080 held
    err = refused(books, None, 1)  # 4,160 + 2,080 > 5,000
    assert err.code == "member_cap_exceeded"
    assert err.extra == {"member": "Cleo (editor)", "cap": 5_000, "spent": 2_080, "held": 2_080, "needed": 2_080}
    job(books, None, 2, role="admin")  # the admin has no cap
    me = books.ledger.me(editor)["member"]["cap"]
    assert (me["spent"], me["held"], me["left"]) == (2_080, 2_080, 840)
    assert books.ledger.me(books.actors["admin"])["member"]["cap"] is None
    books.clock.set(datetime(2026, 12, 1, 0, 1, tzinfo=UTC))  # a new billing period: 5,000 again
    job(books, None, 2)
    books.ledger.budgets.set_cap(books.owner, editor.member_id, None)
    assert books.ledger.me(editor)["member"]["cap"] is None
    job(books, None, 3)


def test_the_fast_hold_is_kept_for_orgs_without_limits_and_left_for_those_with(books: Books) -> None:
    def spend_limits() -> int:
        return int(books.account()["spend_limits"])

    job(books, "spot", 1)  # no limits: the driver's hold, which writes the project and period too
    books.ledger.budgets.put(books.owner, "spot", 10_000, "billing_period", "refuse")
    books.ledger.budgets.put(books.owner, "spot", 9_000, "billing_period", "refuse")  # replaced, not added
    books.ledger.budgets.set_cap(books.owner, books.editor.member_id, 9_000)
    assert spend_limits() == 2
    assert budgets(books)[0]["held"] == 2_080  # the first job counts
    books.ledger.budgets.delete(books.owner, "spot")
    books.ledger.budgets.set_cap(books.owner, books.editor.member_id, None)
    assert spend_limits() == 0 and budgets(books) == []
    with db.read_tx(books.ledger.engine) as conn:
        rows = conn.execute(select(db.jobs.c.project, db.jobs.c.period_start)).all()
    assert [(r.project, r.period_start.isoformat()) for r in rows] == [("spot", "2026-11-01")]


def test_the_estimate_says_what_the_budget_and_the_cap_would_do(books: Books) -> None:
    books.ledger.budgets.put(books.owner, "spot", 5_000, "billing_period", "refuse")
    books.ledger.budgets.set_cap(books.owner, books.editor.member_id, 10_000)
    specs = [shot(f"s{i}") for i in range(3)]
    est = books.ledger.estimate(books.editor, specs, "spot")
    assert (est["total"], est["affordable"], est["shortfall"], est["project"]) == (6_240, False, 0, "spot")
    b = est["budget"]
    assert (b["credits"], b["spent"], b["held"], b["left"], b["verdict"]) == (5_000, 0, 0, 5_000, "refuse")
    assert "needs 6,240" in b["message"]
    cap = est["member_cap"]
    assert (cap["credits_per_period"], cap["left"], cap["verdict"], cap["message"]) == (10_000, 10_000, "within", None)
    books.ledger.budgets.put(books.owner, "spot", 5_000, "billing_period", "pause")
    est = books.ledger.estimate(books.editor, specs, "spot")
    assert (est["affordable"], est["budget"]["verdict"], est["budget"]["pause_before"]) == (True, "pause", 2)
    est = books.ledger.estimate(books.editor, specs * 2, None)  # 12,480 > the cap of 10,000
    assert (est["budget"], est["member_cap"]["verdict"], est["affordable"]) == (None, "refuse", False)


# --- over HTTP: the roles and bad input ------------------------------------------------------------


def _nothing_written(api: Api) -> dict[str, Any]:
    with db.read_tx(api.ledger.engine) as conn:
        return {
            "budgets": conn.execute(select(func.count()).select_from(db.budgets)).scalar_one(),
            "caps": conn.execute(select(func.count()).where(db.members.c.cap_credits.is_not(None))).scalar_one(),
            "limits": conn.execute(select(func.sum(db.accounts.c.spend_limits))).scalar_one(),
            **count_rows(api.ledger.engine),
        }


def test_bad_budget_and_cap_input_is_a_clear_4xx_and_writes_nothing(api: Api) -> None:
    before = _nothing_written(api)
    owner = api.headers()
    long_name = "p" * 10_000
    good = {"credits": 5_000, "period": "billing_period", "action": "refuse"}
    editor_id = api.client.get("/v1/me", headers=api.headers(role="editor")).json()["member"]["id"]
    other_org_member = api.client.get("/v1/me", headers=api.headers(plan="starter")).json()["member"]["id"]
    cases = [
        ("PUT", "/v1/budgets/spot", dict(good, credits=-1), owner, 422, "validation_error", "credits"),
        ("PUT", "/v1/budgets/spot", dict(good, credits=1.5), owner, 422, "validation_error", "credits"),
        ("PUT", "/v1/budgets/spot", dict(good, credits="5000"), owner, 422, "validation_error", "credits"),
        ("PUT", "/v1/budgets/spot", dict(good, credits=10**16), owner, 422, "validation_error", "credits"),
        ("PUT", "/v1/budgets/spot", dict(good, action="explode"), owner, 422, "validation_error", "action"),
        ("PUT", "/v1/budgets/spot", dict(good, period="weekly"), owner, 422, "validation_error", "period"),
        ("PUT", f"/v1/budgets/{long_name}", good, owner, 422, "validation_error", "64 characters"),
        ("PUT", "/v1/budgets/a%01b", good, owner, 422, "validation_error", "control"),
        ("PUT", "/v1/budgets/%20%20", good, owner, 422, "validation_error", "only spaces"),
        ("PUT", "/v1/budgets/spot%FF", good, owner, 422, "validation_error", "UTF-8"),
        ("DELETE", "/v1/budgets/%C3", None, owner, 422, "validation_error", "UTF-8"),
        ("PUT", "/v1/budgets/spot%FF", good, api.headers(role="editor"), 403, "forbidden", "owner or an admin"),
        ("PUT", "/v1/budgets/spot", good, api.headers(role="editor"), 403, "forbidden", "owner or an admin"),
        ("PUT", "/v1/budgets/spot", good, api.headers(role="viewer"), 403, "forbidden", "owner or an admin"),
        ("DELETE", "/v1/budgets/spot", None, api.headers(role="editor"), 403, "forbidden", "owner or an admin"),
        ("DELETE", "/v1/budgets/spot", None, owner, 404, "not_found", "no budget"),
        ("PUT", f"/v1/members/{editor_id}/cap", {"credits_per_period": -5}, owner, 422, "validation_error", "credits"),
        ("PUT", f"/v1/members/{editor_id}/cap", {}, owner, 422, "validation_error", "credits_per_period"),
        (
            "PUT",
            f"/v1/members/{editor_id}/cap",
            {"credits_per_period": 1},
            api.headers(role="editor"),
            403,
            "forbidden",
            "owner",
        ),
        ("PUT", f"/v1/members/{other_org_member}/cap", {"credits_per_period": 1}, owner, 404, "not_found", "not found"),
        (
            "POST",
            "/v1/jobs",
            {"name": "x", "project": long_name, "shots": [shot()]},
            api.headers(idem="k"),
            422,
            "validation_error",
            "64 characters",
        ),
        (
            "POST",
            "/v1/jobs",
            {"name": "x", "project": "", "shots": [shot()]},
            api.headers(idem="k"),
            422,
            "validation_error",
            "non-empty",
        ),
        (
            "POST",
            "/v1/jobs",
            {"name": "x", "project": 7, "shots": [shot()]},
            api.headers(idem="k"),
            422,
            "validation_error",
            "project",
        ),
        (
            "POST",
            "/v1/estimates",
            {"project": long_name, "shots": [shot()]},
            owner,
            422,
            "validation_error",
            "64 characters",
        ),
    ]
    for method, path, body, headers, status, code, words in cases:
        r = api.client.request(method, path, json=body, headers=headers)
        err = r.json()["error"]
        assert (r.status_code, err["code"]) == (status, code), (method, path[:40], body, r.text[:300])
        assert words in err["message"], (path[:40], err["message"])
    assert _nothing_written(api) == before


def test_budgets_and_caps_over_http(api: Api) -> None:
    owner = api.headers()
    body = {"credits": 5_000, "period": "billing_period", "action": "refuse"}
    r = api.client.put("/v1/budgets/spot 2027", json=body, headers=owner)
    assert r.status_code == 200
    assert r.json() == {
        **body,
        "project": "spot 2027",
        "spent": 0,
        "held": 0,
        "left": 5_000,
        "updated_by": r.json()["updated_by"],
    }
    three = {"name": "spot", "project": "spot 2027", "shots": [shot(f"s{i}") for i in range(3)]}
    r = api.client.post("/v1/jobs", json=three, headers=api.headers(role="editor", idem="a"))
    assert r.status_code == 402
    assert r.json()["error"] | {"message": ""} == {
        "code": "budget_exceeded",
        "message": "",
        "project": "spot 2027",
        "budget": 5_000,
        "spent": 0,
        "held": 0,
        "needed": 6_240,
    }
    listed = api.client.get("/v1/budgets", headers=api.headers(role="viewer")).json()
    assert [b["project"] for b in listed["budgets"]] == ["spot 2027"]
    me = api.client.get("/v1/me", headers=api.headers(role="editor")).json()
    assert me["member"]["cap"] is None
    r = api.client.put(f"/v1/members/{me['member']['id']}/cap", json={"credits_per_period": 4_000}, headers=owner)
    assert r.status_code == 200 and r.json()["cap"]["left"] == 4_000
    two = {"name": "two", "shots": [shot("a"), shot("b")]}  # 4,160 > 4,000
    r = api.client.post("/v1/jobs", json=two, headers=api.headers(role="editor", idem="b"))
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["cap"]) == (402, "member_cap_exceeded", 4_000)
    members = api.client.get("/v1/members", headers=api.headers(role="viewer")).json()["members"]
    assert [m["cap"] and m["cap"]["credits_per_period"] for m in members] == [None, None, 4_000, None]
    whole = dict(body, credits=6_000.0)  # JSON's 6000.0 is a whole number of credits too
    assert api.client.put("/v1/budgets/spot 2027", json=whole, headers=owner).json()["credits"] == 6_000
    assert api.client.delete("/v1/budgets/spot 2027", headers=owner).json() == {"deleted": "spot 2027"}
    assert api.client.delete("/v1/budgets/spot 2027", headers=owner).status_code == 404
