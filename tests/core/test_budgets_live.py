"""Budgets and caps from the client, the scripting API and the `act3` command line, over HTTP
against the real act3-server. A shot here (veo-3.1 standard 8 s) is 8 x 260 = 2,080 credits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from support.servers import LiveServer

from act3_credits import api, runtime
from act3_credits.core import cli
from act3_credits.core.client import (
    BudgetExceededError,
    Client,
    ForbiddenError,
    InvalidRequestError,
    MemberCapExceededError,
    new_idempotency_key,
)
from act3_credits.core.sync import Settings


def shots(n: int) -> list[dict[str, Any]]:
    return [
        {"name": f"sh{(i + 1) * 10:03d}", "engine": "veo-3.1", "tier": "standard", "duration_s": 8} for i in range(n)
    ]


def client(srv: LiveServer, role: str) -> Client:
    return Client(srv.url, srv.key("pro", role), retries=0)


def test_the_client_sets_reads_and_meets_budgets_and_caps(live_server: LiveServer) -> None:
    with client(live_server, "owner") as owner, client(live_server, "editor") as editor:
        b = owner.set_budget("seq/010", 5_000, "billing_period", "refuse")  # a slash in the name
        assert (b["project"], b["left"], b["updated_by"]) == ("seq/010", 5_000, "Ana (owner)")
        est = editor.estimate(shots(3), project="seq/010")
        assert (est.affordable, est.limit_verdict("budget"), est.total) == (False, "refuse", 6_240)
        with pytest.raises(BudgetExceededError) as err:
            editor.submit_job("three", shots(3), new_idempotency_key(), project="seq/010")
        assert (err.value.project, err.value.budget, err.value.needed, err.value.status) == (
            "seq/010",
            5_000,
            6_240,
            402,
        )
        assert "needs 6,240" in str(err.value)
        job = editor.create_job("two", shots(2), new_idempotency_key(), project="seq/010")  # 4,160 fits
        assert job.project == "seq/010" and job.warnings == ()
        assert [(x["project"], x["spent"] + x["held"], x["left"]) for x in editor.budgets()] == [
            ("seq/010", 4_160, 840)
        ]

        with pytest.raises(ForbiddenError, match="owner or an admin"):
            editor.set_budget("seq/010", 10**6)
        with pytest.raises(InvalidRequestError, match="64 characters"):
            owner.set_budget("x" * 10_000, 5_000)

        me = editor.me()
        assert me.cap is None
        capped = owner.set_member_cap(me.member_id, 6_000)  # 4,160 already used this period
        assert capped["cap"]["left"] == 1_840
        # (shots render meanwhile: spent and held move, what is left does not)
        assert [m["cap"]["left"] for m in owner.members() if m["id"] == me.member_id] == [1_840]
        with pytest.raises(MemberCapExceededError) as cap_err:
            editor.submit_job("one", shots(1), new_idempotency_key())  # 4,160 + 2,080 > 6,000
        assert (cap_err.value.cap, cap_err.value.needed, cap_err.value.code) == (6_000, 2_080, "member_cap_exceeded")
        assert (editor.me().cap or {})["credits_per_period"] == 6_000
        assert owner.set_member_cap(me.member_id, None)["cap"] is None
        owner.delete_budget("seq/010")
        assert editor.budgets() == []


def test_scripts_manage_budgets_and_are_refused_before_anything_is_sent(live_server: LiveServer) -> None:
    runtime.start(Settings(live_server.url, live_server.key("pro", "admin"), events_wait=2.0))
    try:
        assert api.refresh(wait=10)
        assert api.set_budget("spot", 5_000, action="refuse")["left"] == 5_000
        assert api.set_budget("promo", 5_000, period="total", action="pause")["action"] == "pause"
        assert [b["project"] for b in api.budgets()] == ["promo", "spot"]
        est = api.estimate(shots(3), project="spot")
        assert est["budget"]["message"].startswith("Project 'spot' has a budget of 5,000 credits a billing period")
        with pytest.raises(api.BudgetExceededError, match="needs 6,240"):
            api.submit(shots(3), name="spot batch", project="spot")
        assert all(j.get("project") != "spot" for j in api.jobs())  # refused on the estimate: nothing sent
        job = api.submit(shots(3), name="promo batch", project="promo")
        assert [w["code"] for w in job["warnings"]] == ["budget_pause"]
        assert "pauses before shot 3" in runtime.state().last_message
        me = next(m for m in api.members() if m["role"] == "editor")
        assert api.set_member_cap(me["id"], 1_000)["cap"]["credits_per_period"] == 1_000
        api.delete_budget("spot")
        assert [b["project"] for b in api.budgets()] == ["promo"]
    finally:
        runtime.stop()


def test_the_act3_command_line_manages_budgets_and_caps(live_server, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACT3_API_KEY", live_server.key("pro", "owner"))
    monkeypatch.setenv("ACT3_API_URL", live_server.url)
    assert cli.main(["budget", "set", "spot", "5000", "--action", "pause"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"spot\s+5,000 cr a period\s+pause\s+spent 0 cr, held 0 cr, left 5,000 cr", out), out
    assert cli.main(["estimate", "veo-3.1", "standard", "8", "8", "8", "--project", "spot"]) == 0
    assert "Pause: Project 'spot' has a budget of 5,000 credits" in capsys.readouterr().out
    assert cli.main(["budgets"]) == 0
    assert "left 5,000 cr" in capsys.readouterr().out
    assert cli.main(["--json", "members"]) == 0
    editor = next(m for m in json.loads(capsys.readouterr().out)["members"] if m["role"] == "editor")
    assert cli.main(["cap", str(editor["id"]), "100000"]) == 0
    assert re.search(r"Cleo \(editor\)\s+editor\s+cap 100,000 cr, left 100,000 cr", capsys.readouterr().out)
    assert cli.main(["cap", str(editor["id"]), "none"]) == 0
    assert "no cap" in capsys.readouterr().out
    assert cli.main(["budget", "delete", "spot"]) == 0
    assert capsys.readouterr().out.strip() == "Removed the budget of spot."
    assert cli.main(["budget", "delete", "spot"]) == 1
    assert "has no budget" in capsys.readouterr().err
    assert cli.main(["budget", "set", "spot", "-5"]) == 1
    assert capsys.readouterr().err.startswith("act3: credits must be a whole number of credits from 0")
    monkeypatch.setenv("ACT3_API_KEY", live_server.key("pro", "editor"))
    assert cli.main(["budget", "set", "spot", "5000"]) == 1
    assert "owner or an admin" in capsys.readouterr().err
