"""The add-on's core against the real act3-server over HTTP: what the artist's numbers are, and
that they follow what happens anywhere in the organisation within a second."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from support.servers import LiveServer

from act3_credits import api, runtime
from act3_credits.core.client import AUTH_MESSAGE, AuthError, Client, ForbiddenError, new_idempotency_key
from act3_credits.core.state import State
from act3_credits.core.sync import Settings, SyncWorker, Ticket

PRO_MONTHLY = 875_000


@pytest.fixture
def workers() -> Iterator[list[SyncWorker]]:
    started: list[SyncWorker] = []
    yield started
    for w in started:
        w.stop()
    runtime.stop()


def settings(srv: LiveServer, key: str, **kw) -> Settings:
    # A short long-poll so the service's shutdown between tests does not wait on a stopped worker's poll.
    return Settings(srv.url, key, **{"events_wait": 2.0, **kw})


def start_worker(
    workers: list[SyncWorker], srv: LiveServer, role: str = "owner", key: str | None = None, **kw
) -> SyncWorker:
    worker = SyncWorker(State())
    worker.configure(settings(srv, key or srv.key("pro", role), **kw))
    worker.start()
    workers.append(worker)
    return worker


def synced(worker: SyncWorker, drain_until) -> SyncWorker:
    drain_until(worker, lambda: worker.state.connection == "ok" and worker.state.history.loaded_once, timeout=10)
    return worker


def answered(worker: SyncWorker, ticket: Ticket, drain_until) -> Ticket:
    drain_until(worker, lambda: ticket.done, timeout=15)
    return ticket


def api_requests(srv: LiveServer) -> list[str]:
    return re.findall(r'"((?:GET|POST) /v1/[^ ?"]*)', srv.read_log())


def render(srv: LiveServer, shots: list[tuple[str, str]], role: str = "editor") -> dict:
    """Render (shot name, tier) pairs of 4 s Veo 3.1 Fast through the service, as another artist would."""
    body = {
        "name": "another artist's batch",
        "shots": [{"name": n, "engine": "veo-3.1-fast", "tier": t, "duration_s": 4} for n, t in shots],
    }
    job = srv.post("/jobs", body, role=role, idem=new_idempotency_key()).json()
    deadline = time.monotonic() + 30
    while job["status"] not in ("completed", "failed", "canceled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = srv.get(f"/jobs/{job['id']}").json()
    return job


# ------------------------------------------------------------------ refresh


def test_refresh_fills_the_state_with_the_services_own_numbers(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    state = worker.state
    served = live_server.get("/account/credits").json()
    assert state.credits is not None
    mine = state.credits.to_json()
    assert mine.pop("as_of").endswith("Z") and served.pop("as_of")  # `as_of` is when each was asked
    assert mine == served
    assert state.header_text() == "875,000 cr"
    assert not state.is_stale() and state.last_error is None
    assert state.me.org_name == "Harbour Lane Studio (demo, Pro)"
    assert state.allowed_tiers == ("draft", "standard", "high")
    assert state.payment_method == {"brand": "Visa", "last4": "4242"}
    assert state.rate_card is not None and state.rate_card.price("veo-3.1", "standard", 7.5).credits == 2080
    assert [r.kind for r in state.history.rows] == ["refill"]
    assert state.alert_level() == "ok"


def test_a_second_refresh_reuses_the_rate_card_by_etag(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    card = worker.state.rate_card
    answered(worker, worker.request("refresh"), drain_until)
    assert worker.state.rate_card is card
    assert '"GET /v1/pricing HTTP/1.1" 304' in live_server.read_log()


def test_scripts_refresh_and_read_through_the_api_module(live_server, workers, tmp_path):
    runtime.start(settings(live_server, live_server.key("pro", "admin")), tmp_path)
    assert api.refresh(wait=10) is True
    info = api.credits()
    today = datetime.now(UTC).date()  # the live server's dev clock starts at the real time
    next_first = date(today.year + today.month // 12, today.month % 12 + 1, 1)  # billing day 1
    assert (info.available, info.monthly_allocation, info.held, info.billing_date) == (
        875_000,
        875_000,
        0,
        next_first.isoformat(),
    )
    assert info.stale is False and info.last_error is None
    assert api.header_text() == runtime.state().header_text() == "875,000 cr"
    assert [p["id"] for p in api.credit_packs()] == ["pack-50k", "pack-250k", "pack-1m"]
    assert api.test_connection().startswith("Connected to ACT3 at 127.0.0.1:")


# ------------------------------------------------------------------ buying


def test_a_purchase_whose_answer_was_lost_buys_once(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    key = new_idempotency_key()  # one click on Buy
    first = answered(worker, worker.request("buy", pack_id="pack-250k", idempotency_key=key), drain_until)
    again = answered(worker, worker.request("buy", pack_id="pack-250k", idempotency_key=key), drain_until)
    assert first.ok and again.ok
    assert (first.result.replayed, again.result.replayed) == (False, True)
    assert again.result.purchase["id"] == first.result.purchase["id"]
    assert worker.state.credits.available == PRO_MONTHLY + 250_000
    assert worker.state.credits.rollover_purchased == 250_000
    assert worker.state.last_message == "Bought 250,000 cr for $475.00 (Visa •••• 4242); 1,125,000 cr available."
    assert live_server.get("/account/credits").json()["available"] == 1_125_000
    purchases = live_server.get("/account/credits/history", params={"kind": "purchase"}).json()["items"]
    assert [p["credits"] for p in purchases] == [250_000]


def test_a_viewer_is_told_to_ask_the_owner_or_an_admin(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server, role="viewer"), drain_until)
    ticket = answered(worker, worker.request("buy", pack_id="pack-50k"), drain_until)
    assert isinstance(ticket.error, ForbiddenError)
    line = str(ticket.error)
    assert "owner or an admin" in line and "\n" not in line
    assert worker.state.last_message == line
    assert worker.state.connection == "ok"  # refused, not offline
    assert worker.state.credits.available == PRO_MONTHLY


# ------------------------------------------------------------------ following the organisation


def test_a_purchase_by_another_member_shows_within_a_second_without_polling(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    seen: list[str] = []
    worker.subscribe(lambda event: seen.append(event.type))
    time.sleep(0.3)  # the long poll is waiting on the service now
    before = api_requests(live_server)

    live_server.post("/purchases", {"pack_id": "pack-50k"}, role="admin", idem=new_idempotency_key())
    took = drain_until(worker, lambda: worker.state.credits.available == PRO_MONTHLY + 50_000, timeout=3)

    assert took < 1.0
    assert "purchase.completed" in seen
    after = api_requests(live_server)[len(before) :]
    assert "GET /v1/account/credits" not in after  # the event carried the balance
    drain_until(worker, lambda: worker.state.history.rows[0].kind == "purchase")
    assert worker.state.history.rows[0].credits == 50_000


def test_renders_by_another_artist_update_the_balance_and_history(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    job = render(live_server, [("sh010", "standard"), ("sh020", "high")])
    cost = 98 * 4 + 98 * 2 * 4
    assert job["charged_credits"] == cost
    drain_until(worker, lambda: worker.state.credits.available == PRO_MONTHLY - cost, timeout=3)
    drain_until(worker, lambda: len(worker.state.history.rows) == 3)
    assert [(r.shot, r.credits) for r in worker.state.history.rows[:2]] == [("sh020", -784), ("sh010", -392)]
    drain_until(worker, lambda: job["id"] in worker.state.jobs and worker.state.jobs[job["id"]].status == "completed")
    assert worker.state.jobs[job["id"]].charged_credits == cost


def test_the_state_goes_offline_and_comes_back_with_a_full_refresh(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server, max_backoff=2), drain_until)
    live_server.stop()
    drain_until(worker, lambda: worker.state.connection == "offline", timeout=10)
    assert worker.state.is_stale()
    assert worker.state.header_text() == "875,000 cr"  # the last known number stays, marked stale
    assert worker.state.last_error.startswith(f"ACT3 service unreachable at 127.0.0.1:{live_server.port}")

    live_server.start()
    live_server.post("/purchases", {"pack_id": "pack-50k"}, idem=new_idempotency_key())
    drain_until(worker, lambda: worker.state.connection == "ok", timeout=15)
    drain_until(worker, lambda: worker.state.credits.available == PRO_MONTHLY + 50_000, timeout=5)
    assert not worker.state.is_stale() and worker.state.last_error is None


# ------------------------------------------------------------------ history


def test_history_pages_are_newest_first_without_duplicates_and_filter_on_the_service(live_server, workers, drain_until):
    render(
        live_server,
        [("sh010", "standard"), ("SH020", "high"), ("sh030", "draft"), ("sh040", "high"), ("sh110", "high")],
    )
    worker = synced(start_worker(workers, live_server), drain_until)
    state = worker.state

    answered(worker, worker.request("history", limit=2), drain_until)
    for _ in range(2):
        answered(worker, worker.request("history_more", limit=2), drain_until)
    rows = state.history.rows
    assert len(rows) == 6 and len({r.id for r in rows}) == 6
    assert [(r.at, r.id) for r in rows] == sorted(((r.at, r.id) for r in rows), reverse=True)
    assert rows[-1].kind == "refill" and state.history.next_cursor is None
    assert not state.history.has_more
    asked = len(api_requests(live_server))
    assert answered(worker, worker.request("history_more", limit=2), drain_until).ok
    assert len(state.history.rows) == 6 and len(api_requests(live_server)) == asked  # nothing more to ask

    answered(worker, worker.request("history", tier="high", limit=2), drain_until)
    answered(worker, worker.request("history_more", limit=2), drain_until)
    assert [r.shot for r in state.history.rows] == ["sh110", "sh040", "SH020"]
    assert state.history.tier_totals() == {"high": 3 * 784}

    answered(worker, worker.request("history", shot="sh0", limit=50), drain_until)
    assert [r.shot for r in state.history.rows] == ["sh040", "sh030", "SH020", "sh010"]


def test_scripts_page_through_history_with_cursors(live_server, workers):
    render(live_server, [("a", "draft"), ("b", "draft"), ("c", "draft")])
    runtime.start(settings(live_server, live_server.key("pro", "viewer")))
    ids, cursor = [], None
    while True:
        page = api.history(limit=2, cursor=cursor)
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == 4 == len(set(ids))
    assert [i["shot"] for i in api.history(limit=5, kind="render")["items"]] == ["c", "b", "a"]


# ------------------------------------------------------------------ keys, cache, online access


def test_a_refused_key_says_where_to_fix_it_and_is_never_shown(live_server, workers, drain_until, secret):
    worker = start_worker(workers, live_server, key=secret)
    drain_until(worker, lambda: worker.state.connection == "auth", timeout=10)
    assert worker.state.last_error == AUTH_MESSAGE
    assert worker.state.header_text() == "— cr"
    with pytest.raises(AuthError) as err:
        Client(live_server.url, secret).credits()
    assert err.value.status == 401 and str(err.value) == AUTH_MESSAGE
    for text in (str(err.value), repr(err.value), repr(worker.settings), live_server.read_log()):
        assert secret not in text


def test_keys_never_reach_the_service_log(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    answered(worker, worker.request("buy", pack_id="pack-nope"), drain_until)
    answered(
        worker,
        worker.request("estimate", shots=[{"name": "x", "engine": "veo-3.1", "tier": "4k", "duration_s": 4}]),
        drain_until,
    )
    log = live_server.read_log()
    assert "POST /v1/purchases" in log
    for org in live_server.orgs["orgs"]:
        for key in org["keys"].values():
            assert key not in log


def test_the_cache_is_private_keyless_and_shown_stale_at_the_next_start(live_server, workers, tmp_path):
    key = live_server.key("pro", "owner")
    runtime.start(settings(live_server, key), tmp_path)
    assert api.refresh(wait=10)
    api.buy("pack-50k")
    assert api.refresh(wait=10)
    runtime.stop()
    cache = tmp_path / "act3_cache.json"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert key not in cache.read_text()

    live_server.stop()  # Blender starts again while the service is away
    runtime.start(settings(live_server, key), tmp_path)
    assert api.header_text() == "925,000 cr"
    info = api.credits()
    assert info.stale and info.available == 925_000
    assert runtime.state().history.rows[0].kind == "purchase"
    assert api.refresh(wait=5) is False
    assert api.credits().connection == "offline"
    assert api.header_text() == "925,000 cr"


def test_with_online_access_off_nothing_is_sent(live_server, workers, tmp_path):
    before = api_requests(live_server)
    runtime.start(settings(live_server, live_server.key(), online_access=False), tmp_path)
    assert api.refresh(wait=1) is False
    with pytest.raises(api.NotConfiguredError, match="Allow Online Access"):
        api.buy("pack-50k")
    time.sleep(0.3)
    assert api.credits().connection == "disabled"
    assert api.header_text() == "ACT3: offline"
    assert api_requests(live_server) == before

    runtime.configure(settings(live_server, live_server.key(), online_access=True))  # the user turns it on
    assert api.refresh(wait=10) is True
    assert "GET /v1/account/credits" in api_requests(live_server)


def test_a_new_key_for_another_organisation_shows_that_organisations_balance(live_server, workers, drain_until):
    worker = synced(start_worker(workers, live_server), drain_until)
    answered(worker, worker.request("buy", pack_id="pack-50k"), drain_until)  # Pro's balance is at version 2 now
    worker.configure(settings(live_server, live_server.key("starter", "owner")))
    assert worker.state.is_stale()  # Pro's number is no longer confirmed
    drain_until(worker, lambda: worker.state.credits.plan == "starter" and worker.state.connection == "ok")
    assert worker.state.header_text() == "245,000 cr"
    assert worker.state.me.org_name == "Northlight Animation (demo, Starter)"
