"""What the artist sees when the service misbehaves in ways a real service won't on demand:
it hangs, crashes, answers garbage, drops the connection, or is not there at all."""

from __future__ import annotations

import time

import pytest
from support.faults import FaultServer, closed_port_url

from act3_credits.core.client import (
    AuthError,
    Client,
    EventsPage,
    InvalidRequestError,
    OfflineError,
    ServerError,
    parse_events,
)
from act3_credits.core.state import Credits, State
from act3_credits.core.sync import Settings, SyncWorker

FAST = {"read_timeout": 0.3, "backoff_s": 0.01}


def client(url: str, key: str, **kw) -> Client:
    return Client(url, key, **{**FAST, **kw})


# ------------------------------------------------------------------ the client


def test_hung_service_is_offline_within_the_read_timeout(secret):
    with FaultServer("hang") as srv:
        c = client(srv.url, secret, retries=1)
        start = time.monotonic()
        with pytest.raises(OfflineError) as err:
            c.credits()
        took = time.monotonic() - start
    assert str(err.value) == f"ACT3 service unreachable at 127.0.0.1:{srv.port}: no answer within 0.3 s."
    assert 0.6 <= took < 2.0  # two tries of 0.3 s each, and not a second more
    assert srv.request_count == 2


def test_crashing_service_is_a_server_error_with_its_message(secret):
    with FaultServer("500") as srv:
        with pytest.raises(ServerError) as err:
            client(srv.url, secret).credits()
    assert str(err.value) == f"ACT3 service error at 127.0.0.1:{srv.port} (HTTP 500): Something broke."
    assert err.value.status == 500
    assert srv.request_count == 1  # a 500 is not retried


@pytest.mark.parametrize("call", ["me", "credits", "history", "pricing", "credit_packs"])
def test_garbage_200_is_a_server_error_not_a_traceback(secret, call):
    with FaultServer("garbage") as srv:
        with pytest.raises(ServerError) as err:
            getattr(client(srv.url, secret), call)()
    assert "sent an answer that is not JSON (HTTP 200)" in str(err.value)


@pytest.mark.parametrize(
    "body",
    [{}, {"items": "nope"}, {"total": "many"}, {"error": None}, {"engines": [{"id": 1}], "tiers": [7]}, [1, 2]],
)
def test_json_of_the_wrong_shape_is_a_server_error(secret, body):
    with FaultServer("json", body=body) as srv:
        c = client(srv.url, secret)
        for call in (c.me, c.credits, c.history, c.pricing, c.credit_packs, lambda: c.events(0, 0)):
            with pytest.raises(ServerError, match="does not understand|not JSON"):
                call()


def test_refused_port_is_offline_and_says_so(secret):
    url = closed_port_url()
    with pytest.raises(OfflineError) as err:
        client(url, secret, retries=0).credits()
    assert str(err.value).endswith("connection refused (is the service running?).")


def test_a_password_written_into_the_url_is_refused_and_never_shown(secret, drain_until):
    # requests would send it as Basic auth in place of the key; messages would show it.
    with FaultServer("json", body={}) as srv:
        url = srv.url.replace("http://", f"http://ana:{secret}@")
        with pytest.raises(OfflineError) as err:
            client(url, "act3_other_key_0000000000000", retries=0).credits()
        assert srv.request_count == 0
        worker = hung_worker(url, "act3_other_key_0000000000000")
        try:
            drain_until(worker, lambda: worker.state.connection == "offline")
            shown = [str(err.value), repr(err.value), worker.state.last_error or "", repr(worker.settings)]
        finally:
            worker.stop()
        assert srv.request_count == 0
    assert str(err.value) == "The ACT3 API URL must not hold a user name or password: the API key has its own field."
    for text in shown:
        assert secret not in text and "ana:" not in text, text


def test_a_body_that_is_not_json_is_refused_before_sending(secret):
    shot = {"name": "sh010", "engine": "veo-3.1", "tier": "draft", "duration_s": float("nan")}
    with FaultServer("json", body={}) as srv:
        with pytest.raises(InvalidRequestError, match="cannot be sent as JSON: Out of range float values"):
            client(srv.url, secret).estimate([shot])
        assert srv.request_count == 0  # refused here: it is the input, not the service, that is wrong


def test_a_value_that_is_not_text_is_the_inputs_fault_not_the_urls(secret):
    # `act3 history --shot $'\xff'`: argv decodes the byte to a lone surrogate
    with FaultServer("json", body={}) as srv:
        with pytest.raises(InvalidRequestError, match="not valid text, so it cannot be sent"):
            client(srv.url, secret).history(shot="sh\udcff")
        assert srv.request_count == 0


MALFORMED_URLS = [
    ("http://[::1/v1", "not a valid http(s) URL (check its brackets and port)."),
    ("http://127.0.0.1:99999/v1", "not a valid http(s) URL (check its brackets and port)."),
    ("http://" + "a" * 5000 + "/v1", "host name is too long"),
    ("http://127.0.0.1:8000/v1?x=1", "must end at its path (no ? or #)"),
    ("http://127.0.0.1:8000\nX-Evil: 1/v1", "a space, a line break or a control character"),
    ("127.0.0.1:8000/v1", "it must start with http:// or https:// and name a host."),
]


def test_a_malformed_url_is_one_line_and_the_worker_lives_on(live_server, secret, drain_until):
    """A URL the client cannot even parse used to kill the worker's threads: every request after it
    waited for ever, whatever URL came next."""
    worker = hung_worker(MALFORMED_URLS[0][0], secret)
    try:
        for url, says in MALFORMED_URLS:
            worker.configure(Settings(url, secret, read_timeout=0.5, events_wait=0.2, retries=0))
            drain_until(worker, lambda says=says: says in (worker.state.last_error or ""))
            line = worker.state.last_error or ""
            assert worker.state.connection == "offline" and "\n" not in line and len(line) < 160, line
            ticket = worker.request("estimate", shots=[{"name": "sh010", "engine": "veo-3.1", "tier": "draft",
                                                        "duration_s": 4}])  # fmt: skip
            drain_until(worker, lambda ticket=ticket: ticket.done)
            assert says in str(ticket.error)
        worker.configure(Settings(live_server.url, live_server.key("pro", "viewer"), events_wait=0.2))
        drain_until(worker, lambda: worker.state.connection == "ok" and worker.state.credits is not None, timeout=10)
    finally:
        worker.stop()


def test_dropped_connection_is_offline(secret):
    with FaultServer("drop") as srv, pytest.raises(OfflineError, match="connection was dropped"):
        client(srv.url, secret, retries=0).credits()


def test_busy_service_is_retried_after_retry_after_for_gets_and_keyed_posts(secret):
    with FaultServer("status", status=503, body={}, headers={"Retry-After": "0.2"}) as srv:
        start = time.monotonic()
        with pytest.raises(ServerError):
            client(srv.url, secret, retries=2).credits()
        assert time.monotonic() - start >= 0.4  # honoured Retry-After twice
        assert srv.request_count == 3
        with pytest.raises(ServerError):
            client(srv.url, secret, retries=2).purchase("pack-50k", "key-of-one-click")
        assert srv.request_count == 6
        keys = {line for head in srv.requests[3:] for line in head.split(b"\r\n") if line.startswith(b"Idempotency")}
        assert keys == {b"Idempotency-Key: key-of-one-click"}  # the same key on every try


def test_a_post_without_an_idempotency_key_is_never_repeated(secret):
    with FaultServer("status", status=503, body={}) as srv:
        with pytest.raises(ServerError):
            client(srv.url, secret, retries=3).estimate([{"name": "sh010"}])
        with pytest.raises(ServerError):
            client(srv.url, secret, retries=3).pause_job(1)
    assert srv.request_count == 2


def test_a_long_retry_after_is_reported_not_waited_for(secret):
    with FaultServer("status", status=429, body={}, headers={"Retry-After": "3600"}) as srv:
        start = time.monotonic()
        with pytest.raises(ServerError, match=r"busy \(HTTP 429\)"):
            client(srv.url, secret, retries=3).credits()
    assert time.monotonic() - start < 1
    assert srv.request_count == 1


def test_the_key_is_sent_but_never_shown(secret):
    with FaultServer(
        "status", status=500, body={"error": {"code": "x", "message": f"bad header Bearer {secret}"}}
    ) as srv:
        c = client(srv.url, secret)
        with pytest.raises(ServerError) as err:
            c.credits()
    assert f"Authorization: Bearer {secret}".encode() in srv.requests[0]
    assert b"User-Agent: act3-credits-blender/0.1" in srv.requests[0]
    for text in (str(err.value), repr(err.value), repr(c), repr(Settings("http://x/v1", secret))):
        assert secret not in text
    assert "…b1a0" in repr(c)


@pytest.mark.parametrize("broken", ["\n", "\r\n", "\t", "\x00"])
def test_a_key_with_a_line_break_inside_is_refused_in_words_and_never_shown(secret, broken, drain_until):
    # e.g. an api_key file with a second line, or ACT3_API_KEY set from a file with two lines
    key = secret[:20] + broken + secret[20:]
    with FaultServer("json", body={}) as srv:
        with pytest.raises(AuthError) as err:
            client(srv.url, key).credits()
        assert srv.request_count == 0  # nothing is sent with a key that cannot be a key
        worker = hung_worker(srv.url, key)
        try:
            drain_until(worker, lambda: worker.state.connection == "auth")
        finally:
            worker.stop()
    for text in (str(err.value), repr(err.value), worker.state.last_error or ""):
        assert secret[:20] not in text and secret[20:] not in text
    assert str(err.value).startswith("The ACT3 API key has a line break or another character no key has")


# ------------------------------------------------------------------ the worker


def hung_worker(url: str, key: str, **kw) -> SyncWorker:
    worker = SyncWorker(State())
    worker.configure(Settings(url, key, read_timeout=0.5, events_wait=0.2, retries=0, **kw))
    worker.start()
    return worker


def test_a_hung_service_never_blocks_drain_or_request(secret, drain_until):
    with FaultServer("hang") as srv:
        worker = hung_worker(srv.url, secret, max_backoff=1)
        try:
            slowest = 0.0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:  # a second of Blender's timer while every request hangs
                t = time.perf_counter()
                worker.request("refresh")
                worker.request("buy", pack_id="pack-50k")
                worker.drain()
                slowest = max(slowest, time.perf_counter() - t)
                time.sleep(0.01)
            assert slowest < 0.05
            drain_until(worker, lambda: worker.state.connection == "offline")
            assert (
                worker.state.last_error == f"ACT3 service unreachable at 127.0.0.1:{srv.port}: no answer within 0.5 s."
            )
            assert worker.state.is_stale()
            assert worker.state.header_text() == "— cr"
        finally:
            worker.stop()


def test_stop_returns_at_once_while_a_request_hangs_and_the_state_is_left_alone(secret):
    with FaultServer("hang") as srv:
        worker = hung_worker(srv.url, secret)
        worker.configure(Settings(srv.url, secret, read_timeout=30, events_wait=10))  # everything hangs long
        ticket = worker.request("refresh")
        deadline = time.monotonic() + 5
        while srv.request_count < 1:  # the refresh is on its way and hangs
            assert time.monotonic() < deadline
            time.sleep(0.01)
        start = time.perf_counter()
        worker.stop()
        assert time.perf_counter() - start < 0.5
        before = worker.state.change_count
        assert worker.drain() is False
        assert ticket.done and not ticket.ok and str(ticket.error) == "ACT3 sync is stopped."
        time.sleep(0.3)
        worker.drain()
        assert worker.state.change_count == before


def test_cached_balance_stays_on_screen_marked_stale_while_offline(secret, drain_until):
    state = State()
    state.set_credits(Credits(total=245_000, available=240_000, monthly_allocation=875_000, version=3), from_cache=True)
    worker = SyncWorker(state)
    worker.configure(Settings(closed_port_url(), secret, retries=0))
    worker.start()
    try:
        drain_until(worker, lambda: state.connection == "offline")
        assert state.header_text() == "240,000 cr"  # what could be spent when last seen
        assert state.is_stale()
        assert "connection refused" in (state.last_error or "")
    finally:
        worker.stop()


def test_the_event_stream_backs_off_while_the_service_is_away(secret):
    with FaultServer("drop") as srv:
        worker = hung_worker(srv.url, secret, max_backoff=30)
        try:
            time.sleep(2.5)  # tries at 0, 1, 2 s (then 4 s): not a busy loop
            worker.drain()
            assert 2 <= srv.request_count <= 4
            assert worker.state.connection == "offline"
        finally:
            worker.stop()


def test_an_error_from_a_callback_does_not_escape_drain_nor_stop_the_next_answer(secret, drain_until):
    with FaultServer("500") as srv:
        worker = hung_worker(srv.url, secret)
        try:
            calls: list[str] = []

            def explode(_ticket):
                calls.append("explode")
                raise RuntimeError("a buggy operator callback")

            first = worker.request("credits", callback=explode)
            second = worker.request("me", callback=lambda t: calls.append("second"))
            drain_until(worker, lambda: first.done and second.done)  # drain() itself never raised
            assert calls == ["explode", "second"]
            assert type(first.error) is ServerError and not first.ok
            said = f"ACT3 service error at 127.0.0.1:{srv.port} (HTTP 500): Something broke."
            assert str(first.error) == str(second.error) == said
        finally:
            worker.stop()


def test_an_error_from_a_subscriber_does_not_escape_drain_nor_hide_events_from_the_others(
    secret, drain_until, live_server
):
    worker = SyncWorker(State())
    worker.configure(Settings(live_server.url, live_server.key("pro", "owner"), events_wait=1, read_timeout=5))
    calls: list[str] = []
    seen: list[str] = []

    def explode(event):
        calls.append(event.type)
        raise RuntimeError("a buggy add-on's subscriber")

    worker.subscribe(explode)  # first, so a subscriber after it only sees events if drain goes on
    worker.subscribe(lambda event: seen.append(event.type))
    worker.start()
    try:
        drain_until(worker, lambda: worker.state.credits is not None, timeout=15)
        assert worker.state.credits.total == 875_000
        r = live_server.post("/purchases", {"pack_id": "pack-50k"}, idem="subscribers")
        assert r.status_code == 201
        drain_until(worker, lambda: "purchase.completed" in seen, timeout=15)
        assert sorted(seen) == sorted(calls) == ["balance.changed", "purchase.completed"]
        assert worker.state.credits.total == 875_000 + 50_000
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("online", "key", "connection", "line"),
    [
        (False, "k" * 20, "disabled", "Preferences > System > Network > Allow Online Access"),
        (True, "", "unconfigured", "Preferences > Add-ons > ACT3 Credits"),
    ],
)
def test_nothing_is_sent_without_online_access_or_a_key(online, key, connection, line, drain_until):
    with FaultServer("hang") as srv:
        worker = SyncWorker(State())
        worker.configure(Settings(srv.url, key, online_access=online))
        worker.start()
        try:
            ticket = worker.request("refresh")
            drain_until(worker, lambda: ticket.done)
            time.sleep(0.2)
            worker.drain()
            assert worker.state.connection == connection
            assert line in (worker.state.last_error or "")
            assert line in str(ticket.error)
            assert srv.request_count == 0
        finally:
            worker.stop()


def test_drain_says_whether_anything_changed_and_can_take_a_few_at_a_time():
    worker = SyncWorker(State())
    worker.configure(Settings("http://127.0.0.1:9/v1", "", online_access=True))  # no key: answered locally
    worker.start()
    try:
        assert worker.drain() is False
        tickets = [worker.request("credits") for _ in range(3)]
        worker.drain(max_items=2)
        assert [t.done for t in tickets] == [True, True, False]
        worker.drain()
        assert tickets[2].done and "ACT3_API_KEY" in str(tickets[2].error)
        assert worker.drain() is False
    finally:
        worker.stop()


def test_a_service_that_ignores_the_long_poll_wait_is_not_hammered(secret):
    quiet = {"events": [], "last_seq": 7}
    with FaultServer("json", body=quiet) as srv:
        worker = hung_worker(srv.url, secret)
        worker.configure(Settings(srv.url, secret, events_wait=10))
        try:
            time.sleep(2.0)
            assert 2 <= srv.request_count <= 6, srv.requests  # position, a refresh attempt, and about one poll a second
        finally:
            worker.stop()


def test_a_purchase_whose_answer_never_came_can_be_retried_with_its_key(secret):
    """The service may have bought it: the error carries the key, so buying again with it cannot buy twice."""
    from act3_credits import api, runtime

    with FaultServer("hang") as srv:
        runtime.start(Settings(srv.url, secret, read_timeout=0.3, retries=0, events_wait=0.0))
        try:
            with pytest.raises(OfflineError, match="no answer within 0.3 s") as err:
                api.buy("pack-50k", wait=10)
            key = err.value.extra["idempotency_key"]
            sent = [h for h in srv.requests if h.startswith(b"POST /v1/purchases")]
            assert len(sent) == 1 and f"Idempotency-Key: {key}".encode() in sent[0]

            # Without waiting, the ticket's error carries it too.
            ticket = api.buy("pack-50k", idempotency_key=key, callback=lambda _t: None)
            assert api.wait(ticket, 10) and isinstance(ticket.error, OfflineError)
            assert ticket.error.extra["idempotency_key"] == key
        finally:
            runtime.stop()


def test_an_unreadable_job_event_does_not_hide_the_rest_of_its_page():
    """A garbled event (a job id that is not a number) is skipped when the page is parsed; the balance
    after it still lands, and an event type this add-on does not know reaches subscribers as it came."""
    state = State()
    worker = SyncWorker(state)
    seen: list[tuple[str, dict]] = []
    worker.subscribe(lambda event: seen.append((event.type, event.data())))
    balance = Credits(org_id=1, total=874_216, available=874_216, monthly_allocation=875_000, version=9).to_json()
    events = parse_events(
        [
            {"seq": 1, "type": "job.shot_completed", "data": {"job_id": "not-a-number", "credits": 784}},
            {"seq": 2, "type": "balance.changed", "data": {"balance": balance, "reason": "render"}, "new": 1},
            {"seq": 3, "type": "studio.renamed", "data": {"name": "Blue Studio"}},
        ]
    )
    worker._on_events(EventsPage(events, last_seq=3), {})
    assert state.credits is not None and state.credits.total == 874_216
    assert state.header_text() == "874,216 cr"
    assert seen == [
        ("balance.changed", {"balance": balance, "reason": "render"}),
        ("studio.renamed", {"name": "Blue Studio"}),
    ]
