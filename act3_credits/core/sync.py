"""All network traffic, off the calling thread.

Two daemon threads per configuration, neither of which ever touches bpy or the `State`:

* the command thread runs requests from a queue (refresh, buy, submit_job, ...);
* the events thread long-polls `GET /v1/events`, so a charge or a purchase made anywhere shows up
  within a second, and backs off (1, 2, 4 ... 30 s) while the service is away.

Both put their answers into one results queue. `drain()`, on the main thread (a bpy timer, or
`act3_credits.api` while a script waits), applies them to the `State` and runs callbacks.
`request()` and `drain()` never wait on the network, so a hung service cannot freeze Blender.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import formatting
from .cache import Cache
from .client import (
    CONNECT_TIMEOUT_S,
    DEFAULT_BASE_URL,
    READ_TIMEOUT_S,
    Act3Error,
    AuthError,
    Client,
    EventsPage,
    HistoryPage,
    NotConfiguredError,
    OfflineError,
    PurchaseResult,
    ServerError,
    mask_key,
    new_idempotency_key,
    public_url,
)
from .contract import Job, JobEvent, JobStatusChanged, Me, ServiceEvent, ShotCompleted, ShotFailed
from .logs import log
from .pricing import DEFAULT_RATE_CARD, RateCard
from .state import Credits, History, Spend, State
from .usage import keep_rows
from .values import value
from .vocabulary import RUNNING, Event, Status

DISABLED_MESSAGE = (
    "Online access is off: turn on Preferences > System > Network > Allow Online Access to sync ACT3 credits."
)
NO_KEY_MESSAGE = "No ACT3 API key: add one in Preferences > Add-ons > ACT3 Credits (or set ACT3_API_KEY)."
STOPPED_MESSAGE = "ACT3 sync is stopped."

# Errors that say the link (not the request) is broken.
LINK_ERRORS = (OfflineError, ServerError, AuthError)
# Events after which the newest history page has rows we do not show yet.
HISTORY_EVENTS = frozenset({Event.SHOT_COMPLETED, Event.PURCHASE_COMPLETED, Event.BILLING_REFILLED})
# The Spend panel's most expensive shots keep their rows while a batch charges (see _show_spend),
# at most this long after the last charge.
HOLD_ORDER_S = 60.0
CACHE_EVERY_S = 2.0
# The Spend panel and the runway follow charges, purchases and refills, but a batch charges a shot
# every second or so: fetch them again at most this often (seven small GETs each time).
SPEND_EVERY_S = 5.0
TOP_SHOTS = 10
RESYNC_EVERY_S = 15.0


@value
class Settings:
    """Where and how to connect; a change of any of them reconnects."""

    base_url: str
    api_key: str
    online_access: bool
    connect_timeout: float
    read_timeout: float
    events_wait: float  # seconds each long poll may wait on the service
    history_limit: int
    retries: int
    max_backoff: float

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        online_access: bool = True,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        events_wait: float = 30.0,  # the API's longest: an idle Blender asks the service twice a minute
        history_limit: int = 50,
        retries: int = 2,
        max_backoff: float = 30.0,
    ) -> None:
        self.__dict__.update(
            base_url=base_url,
            api_key=api_key,
            online_access=online_access,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            events_wait=events_wait,
            history_limit=history_limit,
            retries=retries,
            max_backoff=max_backoff,
        )

    def __repr__(self) -> str:
        url = public_url(self.base_url)
        return f"Settings(base_url={url!r}, api_key={mask_key(self.api_key)!r}, online={self.online_access})"


class Ticket:
    """One request; `drain()` fills `done`, `ok`, `result` and `error` and then runs the callback."""

    id: int
    kind: str
    params: dict[str, Any]
    callback: Callable[[Ticket], None] | None
    done: bool
    ok: bool
    result: Any
    error: Act3Error | None

    def __init__(
        self,
        id: int,
        kind: str,
        params: dict[str, Any],
        callback: Callable[[Ticket], None] | None = None,
        done: bool = False,
        ok: bool = False,
        result: Any = None,
        error: Act3Error | None = None,
    ) -> None:
        self.id, self.kind, self.params, self.callback = id, kind, params, callback
        self.done, self.ok, self.result, self.error = done, ok, result, error

    def __repr__(self) -> str:
        return (
            f"Ticket(id={self.id!r}, kind={self.kind!r}, params={self.params!r}, done={self.done!r}, "
            f"ok={self.ok!r}, result={self.result!r}, error={self.error!r})"
        )


@value
class RefreshResult:
    """What one refresh brought."""

    me: Me
    credits: Credits
    pricing: dict[str, Any] | None  # None: the card did not change (304)
    pricing_etag: str | None
    history: HistoryPage

    def __init__(
        self,
        me: Me,
        credits: Credits,
        pricing: dict[str, Any] | None,
        pricing_etag: str | None,
        history: HistoryPage,
    ) -> None:
        self.__dict__.update(me=me, credits=credits, pricing=pricing, pricing_etag=pricing_etag, history=history)


class _Result:
    """An answer (or the error) of the link's threads, for `drain()`."""

    __slots__ = ("generation", "kind", "ticket_id", "result", "error")

    def __init__(
        self, generation: int, kind: str, ticket_id: int = 0, result: Any = None, error: Act3Error | None = None
    ) -> None:
        self.generation, self.kind, self.ticket_id, self.result, self.error = generation, kind, ticket_id, result, error


class _Link:
    """The threads and clients of one configuration; replaced whole when the settings change."""

    def __init__(self, settings: Settings, results: queue.Queue[_Result], generation: int) -> None:
        self.settings = settings
        self.results = results
        self.generation = generation
        self.stop = threading.Event()
        self.commands: queue.Queue[tuple[int, str, dict[str, Any]] | None] = queue.Queue()
        self.clients: list[Client] = []  # to abort what is in flight on shutdown
        self.threads = [
            threading.Thread(target=self._command_loop, name="act3-commands", daemon=True),
            threading.Thread(target=self._events_loop, name="act3-events", daemon=True),
        ]

    def client(self, retries: int | None = None) -> Client:
        s = self.settings
        client = Client(
            s.base_url,
            s.api_key,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            retries=s.retries if retries is None else retries,
            cancel=self.stop,
        )
        self.clients.append(client)
        return client

    def post(self, kind: str, ticket_id: int = 0, result: Any = None, error: Act3Error | None = None) -> None:
        if not self.stop.is_set():  # after stop() nothing reaches the state
            self.results.put(_Result(self.generation, kind, ticket_id, result, error))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def shutdown(self, join_s: float) -> None:
        self.stop.set()
        self.commands.put(None)
        # A long poll or a hung service would keep a thread for up to a read time-out: cut it now.
        for client in list(self.clients):
            client.abort()
        deadline = time.monotonic() + join_s
        for t in self.threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ command thread

    def _command_loop(self) -> None:
        client = self.client()
        try:
            while not self.stop.is_set():
                item = self.commands.get()
                if item is None or self.stop.is_set():
                    return
                ticket_id, kind, params = item
                try:
                    self.post(kind, ticket_id, result=_run(client, kind, params))
                except Act3Error as exc:
                    self.post(kind, ticket_id, error=exc)
                except Exception as exc:  # a bug here must not kill the thread or reach Blender as a traceback
                    log.exception("ACT3 %s failed", kind)
                    self.post(kind, ticket_id, error=Act3Error(f"ACT3 {kind} failed: {exc}", code="internal"))
        finally:
            client.close()

    # ------------------------------------------------------------------ events thread

    def _events_loop(self) -> None:
        # No retries inside the client: this loop has its own backoff and must notice stop() quickly.
        client = self.client(retries=0)
        last_seq: int | None = None
        backoff = 1.0
        try:
            while not self.stop.is_set():
                try:
                    if last_seq is None:
                        # Take the position first, then refresh: nothing between the two is missed.
                        last_seq = client.events(None, 0).last_seq
                        self.post("_resync")
                        backoff = 1.0
                        continue
                    asked = time.monotonic()
                    page = client.events(last_seq, self.settings.events_wait)
                    if not page.events and time.monotonic() - asked < min(1.0, self.settings.events_wait / 2):
                        self.stop.wait(1.0)  # a service that ignores `wait` must not be hammered
                    if page.last_seq < last_seq:  # the service's log was reset: start again
                        last_seq = None
                        continue
                    last_seq = page.last_seq
                    self.post("_events", result=page)
                except Act3Error as exc:
                    self.post("_link_error", error=exc)
                    if not isinstance(exc, LINK_ERRORS) and last_seq is None:
                        self.post("_resync")  # no event stream here (e.g. 404): at least fetch everything once
                    last_seq = None
                    slow = not isinstance(exc, (OfflineError, ServerError))  # a refused key will not fix itself
                    wait = self.settings.max_backoff if slow else backoff
                    backoff = min(backoff * 2, self.settings.max_backoff)
                    self.stop.wait(wait)
                except Exception:
                    log.exception("ACT3 event stream failed")
                    last_seq = None
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.max_backoff)
        finally:
            client.close()


def _refresh(client: Client, p: dict[str, Any]) -> RefreshResult:
    """me + credits + pricing (ETag) + the first history page of the panel's filter."""
    me = client.me()
    credits = client.credits()
    pricing, etag = client.pricing(p.get("etag"))
    history = client.history(limit=p["limit"], tier=p.get("tier"), shot=p.get("shot"))
    return RefreshResult(me, credits, pricing, etag, history)


def _spend(client: Client, p: dict[str, Any]) -> Spend:
    """The current period by tier, by day for each tier (the chart's stacks), the top shots, the forecast.

    The first answer names the period; the others ask for exactly that range, so a refill between
    two of them cannot mix two periods.
    """
    by_tier = client.usage(group_by="tier")
    start, end = by_tier.start, by_tier.end
    days = tuple((tier, client.usage(start, end, group_by="day", tier=tier)) for tier in p["tiers"])
    top = client.usage(start, end, group_by="shot", limit=TOP_SHOTS)
    return Spend(by_tier, days, top, client.forecast())


def _history(client: Client, p: dict[str, Any]) -> HistoryPage:
    return client.history(
        limit=p["limit"], cursor=p.get("cursor"), tier=p.get("tier"), shot=p.get("shot"), kind=p.get("kind")
    )


class Request:
    """One kind of request: what the command thread asks the service (`run`, network and parsing
    only), and what `drain()` does with the answer on the main thread (`apply`, a SyncWorker
    method; None: the ticket alone carries it)."""

    __slots__ = ("apply", "run")

    def __init__(
        self,
        run: Callable[[Client, dict[str, Any]], Any],
        apply: Callable[[SyncWorker, Any, dict[str, Any]], None] | None = None,
    ) -> None:
        self.run = run
        self.apply = apply


def _run(client: Client, kind: str, p: dict[str, Any]) -> Any:
    """One command, on the command thread."""
    return REQUESTS[kind].run(client, p)


class SyncWorker:
    """Owns the link to the service and applies what it brings to one `State`, on the main thread."""

    def __init__(self, state: State | None = None, cache: Cache | None = None) -> None:
        self.state = state if state is not None else State()
        self.cache = cache
        self.settings = Settings(online_access=False)
        self._results: queue.Queue[_Result] = queue.Queue()
        self._link: _Link | None = None
        self._generation = 0
        self._running = False
        self._ids = itertools.count(1)
        self._tickets: dict[int, Ticket] = {}
        self._subscribers: list[Callable[[ServiceEvent], None]] = []
        self._refreshing = 0  # refresh tickets in flight
        self._history_dirty = False
        self._history_ticket: Ticket | None = None
        self._spend_dirty = False  # a charge, purchase or refill since the last spend answer
        self._spend_answer: Spend | None = None  # the latest, as the service ranked it (see _show_spend)
        self._charged_at = -HOLD_ORDER_S  # monotonic time of the last charge this link saw
        self._spend_ticket: Ticket | None = None
        self._spend_asked = -SPEND_EVERY_S  # monotonic time of the last spend request
        self._job_fetches: dict[int, bool] = {}  # job id -> fetch again when this answer is in
        self._cache_dirty = False
        self._cache_saved_at = 0.0
        self._last_resync = 0.0
        self._was_stale = self.state.is_stale()
        self._lock = threading.Lock()  # request() may come from a script's thread

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._running

    def configure(self, settings: Settings) -> None:
        """Use these settings from now on; a running worker reconnects (answers to the old ones are dropped)."""
        changed = settings != self.settings
        self.settings = settings
        if self._running and (changed or self._link is None):
            self._relink()
        elif not self._running:
            self._show_configuration()

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._relink()

    def stop(self, join_s: float = 0.3) -> None:
        """Returns within about `join_s`: threads blocked on the network finish on their own, mute."""
        self._running = False
        self._unlink(join_s)
        self._fail_pending(NotConfiguredError(STOPPED_MESSAGE, code="stopped"))
        self._save_cache(force=True)

    def _relink(self) -> None:
        old = self._link.settings if self._link is not None else None
        if old is not None and (old.base_url, old.api_key) != (self.settings.base_url, self.settings.api_key):
            # Another service or key: what we hold is no longer confirmed (and its version not comparable).
            self.state.credits_from_cache = True
            self.state.spend = None  # another organisation's spend
            self._spend_answer = None
            self._charged_at = -HOLD_ORDER_S
            self.state.touch()
        self._unlink(0.0)
        self._fail_pending(NotConfiguredError("The ACT3 settings changed; try again.", code="reconfigured"))
        if self._show_configuration():
            with self._lock:
                self._link = _Link(self.settings, self._results, self._generation)
            self._link.start()

    def _unlink(self, join_s: float) -> None:
        with self._lock:
            link, self._link = self._link, None
            self._generation += 1  # whatever the old threads still post is ignored
            self._refreshing = 0
            self._history_ticket = None
            self._spend_ticket = None
            self._job_fetches.clear()
        if link is not None:
            link.shutdown(join_s)

    def _show_configuration(self) -> bool:
        """Put why nothing is sent (or that we are connecting) into the state. True when we may connect."""
        s = self.settings
        if not s.online_access:
            self.state.set_connection("disabled", DISABLED_MESSAGE)
            return False
        if not s.api_key:
            self.state.set_connection("unconfigured", NO_KEY_MESSAGE)
            return False
        self.state.set_connection("connecting", None)  # until this link's first answer
        return True

    def _fail_pending(self, error: Act3Error) -> None:
        with self._lock:
            pending, self._tickets = self._tickets, {}
        for ticket in pending.values():
            ticket.done, ticket.ok, ticket.error = True, False, error
        self.state.history.loading = False

    # ------------------------------------------------------------------ requests

    def request(self, kind: str, /, callback: Callable[[Ticket], None] | None = None, **params: Any) -> Ticket:
        """Queue a request; never blocks. The ticket is filled (and `callback(ticket)` run) by `drain()`."""
        if kind not in REQUESTS:
            raise ValueError(f"unknown ACT3 request {kind!r}; known: {', '.join(sorted(REQUESTS))}")
        params = self._prepare(kind, params)
        with self._lock:
            ticket = Ticket(next(self._ids), kind, params, callback)
            self._tickets[ticket.id] = ticket
            link = self._link
            generation = self._generation
            if kind == "refresh":
                self._refreshing += 1
        if kind == "history_more" and params["cursor"] is None and self.state.history.loaded_once:
            self._results.put(_Result(generation, kind, ticket.id, result=None))  # all loaded: nothing to ask
        elif link is None:
            error = self._why_not_sent()
            self._results.put(_Result(generation, kind, ticket.id, error=error))
        else:
            link.commands.put((ticket.id, kind, params))
        return ticket

    def _why_not_sent(self) -> NotConfiguredError:
        if not self.settings.online_access:
            return NotConfiguredError(DISABLED_MESSAGE, code="online_access_disabled")
        if not self.settings.api_key:
            return NotConfiguredError(NO_KEY_MESSAGE, code="no_api_key")
        return NotConfiguredError(STOPPED_MESSAGE, code="stopped")

    def _prepare(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Fill in what the request needs from the state, here on the caller's thread."""
        p = dict(params)
        h = self.state.history
        limit = int(p.get("limit") or self.settings.history_limit)
        if kind == "refresh":
            p.update(limit=limit, tier=h.tier, shot=h.shot)
            if self.state.rate_card is not None and self.state.pricing_etag:
                p["etag"] = self.state.pricing_etag
        elif kind == "history":
            tier, shot = p.get("tier") or "", p.get("shot") or ""
            if (tier, shot) != (h.tier, h.shot):
                self.state.history = History(tier=tier, shot=shot)
            self.state.history.loading = True
            p.update(limit=limit, tier=tier, shot=shot, cursor=None)
        elif kind == "history_more":
            p.update(limit=limit, tier=h.tier, shot=h.shot, cursor=h.next_cursor if h.loaded_once else None)
            h.loading = True
        elif kind == "history_page":
            p["limit"] = limit
        elif kind == "spend":
            card = self.state.rate_card or DEFAULT_RATE_CARD
            p.setdefault("tiers", tuple(t.id for t in card.tiers))
        elif kind in ("buy", "submit_job"):
            # One key per user action, reused by every retry of it (a lost answer must not buy twice).
            p.setdefault("idempotency_key", new_idempotency_key())
        return p

    def subscribe(self, callback: Callable[[ServiceEvent], None]) -> None:
        """`callback(event)` for every event from the service (typed: core/contract.py), run by `drain()`."""
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[ServiceEvent], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def wait(self, ticket: Ticket, timeout: float, poll_s: float = 0.01) -> bool:
        """Drain until the ticket is answered or `timeout` passes; for scripts, never for draw code."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            if ticket.done or time.monotonic() >= deadline:
                return ticket.done
            time.sleep(poll_s)

    # ------------------------------------------------------------------ drain (main thread)

    def drain(self, max_items: int | None = None) -> bool:
        """Apply what the threads brought; True when anything the UI shows changed."""
        before = self.state.change_count
        count = 0
        while max_items is None or count < max_items:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                break
            count += 1
            if item.generation != self._generation:
                continue
            try:
                self._apply(item)
            except Exception:  # never let a surprise in one answer escape into Blender's timer
                log.exception("ACT3: could not apply %s", item.kind)
        if self._running and self._link is not None:
            self._follow_up()
            answer, shown = self._spend_answer, self.state.spend
            if answer is not None and shown is not None and shown.top_shots is not answer.top_shots:
                # The top shots' order is held: ranked again when the batch ends (a job answer or
                # event just applied) or HOLD_ORDER_S after the last charge.
                self._show_spend()
        stale = self.state.is_stale()
        changed = self.state.change_count != before or stale != self._was_stale
        self._was_stale = stale
        if changed:
            self._cache_dirty = True
        self._save_cache()
        return changed

    def _apply(self, item: _Result) -> None:
        with self._lock:
            ticket = self._tickets.pop(item.ticket_id, None) if item.ticket_id else None
            if item.kind == "refresh" and item.ticket_id:
                self._refreshing = max(0, self._refreshing - 1)
        if item.error is not None:
            self._apply_error(item)
        else:
            known = REQUESTS.get(item.kind)
            apply = known.apply if known is not None else LINK_RESULTS[item.kind]
            if apply is not None:
                apply(self, item.result, ticket.params if ticket else {})
        if ticket is not None:
            ticket.done, ticket.ok = True, item.error is None
            ticket.result, ticket.error = item.result, item.error
            if ticket is self._history_ticket:
                self._history_ticket = None
            if ticket is self._spend_ticket:
                self._spend_ticket = None
            if ticket.kind == "job":
                self._job_fetched(int(ticket.params["job_id"]))
            if ticket.callback is not None:
                try:
                    ticket.callback(ticket)
                except Exception:
                    log.exception("ACT3: a %s callback failed", ticket.kind)

    def _apply_error(self, item: _Result) -> None:
        err = item.error
        assert err is not None
        if item.kind in ("history", "history_more"):
            self.state.history.loading = False
        if isinstance(err, AuthError):
            self.state.set_connection("auth", str(err))
        elif isinstance(err, LINK_ERRORS):
            self.state.set_connection("offline", str(err))
        elif isinstance(err, NotConfiguredError):
            pass  # the state already says why (disabled / unconfigured)
        elif item.kind == "_link_error":
            log.warning("ACT3 event stream: %s", err)
        elif item.kind == "spend":
            # Background work nobody clicked for (a service without usage answers 404): log it, and
            # the panel keeps its last numbers, or its dash.
            log.warning("ACT3 spend: %s", err)
        else:
            self.state.last_message = str(err)
            self.state.touch()

    # One method per answer kind: `_on_<kind>(result, params)`.

    def _on_refresh(self, r: RefreshResult, p: dict[str, Any]) -> None:
        self._on_me(r.me, p)
        self.state.set_credits(r.credits)
        if r.pricing is not None:
            self.state.rate_card = RateCard.from_json(r.pricing)
            self.state.pricing_etag = r.pricing_etag
        h = self.state.history
        if (p.get("tier") or "", p.get("shot") or "") == (h.tier, h.shot):
            h.apply_page(r.history.rows, r.history.next_cursor, first=True)
            self._history_dirty = False
        self._spend_dirty = True  # on connect and on every Refresh: the spend too, right after
        self.state.touch()

    def _on_me(self, me: Me, p: dict[str, Any]) -> None:
        self.state.me = me
        self.state.allowed_tiers = me.allowed_tiers
        if me.payment_method is not None:
            self.state.payment_method = me.payment_method
        self.state.touch()

    def _on_credits(self, credits: Credits, p: dict[str, Any]) -> None:
        self.state.set_credits(credits)

    def _on_test_connection(self, r: tuple[Me, Credits], p: dict[str, Any]) -> None:
        me, credits = r
        self._on_me(me, p)
        self.state.set_credits(credits)
        self.state.last_message = (
            f"Connected to ACT3 at {_host(self.settings.base_url)} as {me.member_name or '?'} "
            f"({me.role}) of {me.org_name}, {formatting.credits(credits.available)} available."
        )

    def _on_history(self, page: HistoryPage | None, p: dict[str, Any]) -> None:
        h = self.state.history
        if page is None:
            h.loading = False
            return
        if (p.get("tier") or "", p.get("shot") or "") != (h.tier, h.shot):
            return  # the filter changed while this page was on its way
        if p.get("_merge"):
            h.merge_newest(page.rows, page.next_cursor)
        else:
            h.apply_page(page.rows, page.next_cursor, first=p.get("cursor") is None)
        self.state.touch()

    def _on_packs(self, r: dict[str, Any], p: dict[str, Any]) -> None:
        self.state.packs = list(r["packs"])
        if r.get("payment_method") is not None:
            self.state.payment_method = r["payment_method"]
        self.state.touch()

    def purchase_line(self, r: PurchaseResult) -> str:
        """What the artist reads after a purchase went through."""
        credits = int(r.purchase.get("credits") or 0)
        price = r.purchase.get("price_cents")
        paid = f" for ${price / 100:,.2f}" if isinstance(price, int) else ""
        card = r.purchase.get("payment_method") or self.state.payment_method
        return (
            f"Bought {formatting.credits(credits)}{paid} ({formatting.payment_method(card)}); "
            f"{formatting.credits(r.balance.available)} available."
        )

    def _on_buy(self, r: PurchaseResult, p: dict[str, Any]) -> None:
        self.state.set_credits(r.balance)
        self.state.last_message = self.purchase_line(r)
        self._history_dirty = True
        self._spend_dirty = True
        self.state.touch()

    def _on_spend(self, spend: Spend, p: dict[str, Any]) -> None:
        self._spend_answer = spend
        self._show_spend()

    def _show_spend(self) -> None:
        """The Spend panel's figures are the latest answer's. While a batch renders (a job queued or
        processing, and a charge within the last HOLD_ORDER_S), its most expensive shots keep the
        order already shown, each with its latest figures (`usage.keep_rows`): each row selects its
        shot, and a re-ranking after every charge would move the row under the artist's pointer.
        They are ranked again once nothing runs, or nothing was charged for HOLD_ORDER_S (a job
        whose end this session missed, while its event stream was down, holds nothing for long)."""
        latest = self._spend_answer
        shown = self.state.spend
        if latest is None:
            return
        charging = time.monotonic() - self._charged_at < HOLD_ORDER_S
        if shown is not None and charging and any(j.status in RUNNING for j in self.state.jobs.values()):
            top = keep_rows(shown.top_shots, latest.top_shots, TOP_SHOTS)
            latest = Spend(latest.by_tier, latest.days, top, latest.forecast)
        if latest != shown:
            self.state.spend = latest
            self.state.touch()

    def _on_submit_job(self, job: Job, p: dict[str, Any]) -> None:
        self.state.jobs[job.id] = job  # what the artist reads about it is core.submission's
        self.state.touch()

    def _on_jobs(self, jobs: list[Job], p: dict[str, Any]) -> None:
        for job in jobs:
            self.state.jobs[job.id] = job
        self.state.touch()

    def _on_job(self, job: Job, p: dict[str, Any]) -> None:
        self.state.jobs[job.id] = job
        self.state.touch()

    def _on_budgets(self, answer: list[dict[str, Any]], p: dict[str, Any]) -> None:
        self.state.budgets = answer
        self.state.touch()

    def _on_auto_top_up(self, answer: dict[str, Any], p: dict[str, Any]) -> None:
        self.state.auto_top_up = answer
        self.state.touch()

    def _on_resync(self, _r: None, _p: dict[str, Any]) -> None:
        """The event stream (re)connected: fetch everything once, then events keep it current."""
        if not self._refreshing:
            self._last_resync = time.monotonic()
            self.request("refresh")

    def _on_events(self, page: EventsPage, _p: dict[str, Any]) -> None:
        if not page.events:
            self.state.mark_synced()  # a quiet, connected stream: the balance held is current
            if self.state.connection != "ok" and not self._refreshing:
                if time.monotonic() - self._last_resync > RESYNC_EVERY_S:
                    self._on_resync(None, {})
            return
        for event in page.events:
            balance = getattr(event, "balance", None)
            if isinstance(balance, Credits):
                self.state.set_credits(balance)
            if isinstance(event, ShotCompleted):
                self._charged_at = time.monotonic()
            if isinstance(event, (JobStatusChanged, ShotCompleted, ShotFailed)):
                self._job_event(event)
            if event.type in HISTORY_EVENTS:
                self._history_dirty = True
                self._spend_dirty = True
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:
                    log.exception("ACT3: an event subscriber failed")

    def _job_event(self, event: JobEvent) -> None:
        job = self.state.jobs.get(event.job_id)
        if job is not None:
            self.state.jobs[event.job_id] = job_after(job, event)
            self.state.touch()
        # The event carries the news; the job itself has the exact held/charged numbers.
        if event.job_id in self._job_fetches:
            self._job_fetches[event.job_id] = True  # the answer on its way may predate this event
        else:
            self._job_fetches[event.job_id] = False
            self.request("job", job_id=event.job_id)

    def _job_fetched(self, job_id: int) -> None:
        if self._job_fetches.pop(job_id, False) and self._link is not None:
            self._job_fetches[job_id] = False
            self.request("job", job_id=job_id)

    def _follow_up(self) -> None:
        """Fetch the newest history page after events that add rows (one request in flight at most),
        and the spend after a charge, purchase or refill (debounced: at most every SPEND_EVERY_S)."""
        now = time.monotonic()
        if self._spend_dirty and self._spend_ticket is None and now - self._spend_asked >= SPEND_EVERY_S:
            self._spend_dirty = False
            self._spend_asked = now
            self._spend_ticket = self.request("spend")
        if self._history_dirty and self._history_ticket is None and not self._refreshing:
            self._history_dirty = False
            h = self.state.history
            self._history_ticket = self.request(
                "history_page",
                tier=h.tier,
                shot=h.shot,
                limit=self.settings.history_limit,
                callback=self._merge_history,
            )

    def _merge_history(self, ticket: Ticket) -> None:
        if ticket.ok:
            self._on_history(ticket.result, {**ticket.params, "_merge": True})

    # ------------------------------------------------------------------ cache

    def _save_cache(self, force: bool = False) -> None:
        if self.cache is None or not self._cache_dirty:
            return
        if not force and time.monotonic() - self._cache_saved_at < CACHE_EVERY_S:
            return
        if self.state.credits is None or self.state.credits_from_cache:
            return  # nothing confirmed by the service yet: keep what is on disk
        try:
            self.cache.save(self.state, self.settings.base_url)
        except OSError as exc:
            log.warning("ACT3: could not save the cache: %s", exc)
        self._cache_dirty = False
        self._cache_saved_at = time.monotonic()


# Every request the worker takes, in one place: its service call and what applies the answer.
REQUESTS: dict[str, Request] = {
    "refresh": Request(_refresh, SyncWorker._on_refresh),
    "credits": Request(lambda c, p: c.credits(), SyncWorker._on_credits),
    "me": Request(lambda c, p: c.me(), SyncWorker._on_me),
    "test_connection": Request(lambda c, p: (c.me(), c.credits()), SyncWorker._on_test_connection),
    "history": Request(_history, SyncWorker._on_history),  # (re)load the panel's list: tier, shot
    "history_more": Request(_history, SyncWorker._on_history),  # the panel's next page
    "history_page": Request(_history),  # a page for a script: limit, cursor, tier, shot, kind
    "packs": Request(lambda c, p: c.credit_packs(), SyncWorker._on_packs),
    "buy": Request(lambda c, p: c.purchase(p["pack_id"], p["idempotency_key"]), SyncWorker._on_buy),
    "estimate": Request(lambda c, p: c.estimate(p["shots"], p.get("project"), p.get("when"))),
    "submit_job": Request(
        lambda c, p: c.submit_job(p["name"], p["shots"], p["idempotency_key"], p.get("project"), p.get("start")),
        SyncWorker._on_submit_job,
    ),
    "auto_top_up": Request(lambda c, p: c.auto_top_up(), SyncWorker._on_auto_top_up),
    "set_auto_top_up": Request(
        lambda c, p: c.set_auto_top_up(p["enabled"], p["below"], p["pack_id"], p["max_per_period_cents"]),
        SyncWorker._on_auto_top_up,
    ),
    # Budgets and caps: the budgets are kept in the State (the Cost Estimate reads them); the rest a
    # ticket alone carries.
    "budgets": Request(lambda c, p: c.budgets(), SyncWorker._on_budgets),
    "set_budget": Request(lambda c, p: c.set_budget(p["project"], p["credits"], p["period"], p["action"])),
    "delete_budget": Request(lambda c, p: c.delete_budget(p["project"])),
    "members": Request(lambda c, p: c.members()),
    "set_member_cap": Request(lambda c, p: c.set_member_cap(p["member_id"], p["credits_per_period"])),
    "jobs": Request(lambda c, p: c.jobs(status=p.get("status"), limit=p.get("limit", 50)), SyncWorker._on_jobs),
    "job": Request(lambda c, p: c.job(p["job_id"]), SyncWorker._on_job),
    "pause_job": Request(lambda c, p: c.pause_job(p["job_id"]), SyncWorker._on_job),
    "resume_job": Request(lambda c, p: c.resume_job(p["job_id"]), SyncWorker._on_job),
    "cancel_job": Request(lambda c, p: c.cancel_job(p["job_id"]), SyncWorker._on_job),
    # For scripts (api.usage, api.forecast): the typed answer on the ticket.
    "usage": Request(
        lambda c, p: c.usage(
            p.get("start"), p.get("end"), p.get("group_by", "day"), p.get("tier"), p.get("engine"), p.get("limit", 50)
        )
    ),  # fmt: skip
    "forecast": Request(lambda c, p: c.forecast()),
    "spend": Request(_spend, SyncWorker._on_spend),  # the Spend panel and the runway: see _follow_up
}
# What the link's own threads post (never asked for by a caller), applied the same way.
LINK_RESULTS: dict[str, Callable[[SyncWorker, Any, dict[str, Any]], None] | None] = {
    "_resync": SyncWorker._on_resync,
    "_link_error": None,  # errors go through _apply_error
    "_events": SyncWorker._on_events,
}


def job_after(job: Job, event: JobEvent) -> Job:
    """The job as an event says it is now, until the job itself is fetched again (a new value)."""
    if isinstance(event, JobStatusChanged):
        return replace(job, status=event.status, status_reason=event.reason)
    if not 0 <= event.shot_index < len(job.shots):
        return job
    shots = list(job.shots)
    old = shots[event.shot_index]
    if isinstance(event, ShotFailed):
        shots[event.shot_index] = replace(old, status=Status.FAILED, error=event.error)
        return replace(job, shots=tuple(shots))
    shots[event.shot_index] = replace(old, status=Status.COMPLETED, credits=event.credits)
    charged = sum(s.credits for s in shots if s.status == Status.COMPLETED)
    return replace(job, shots=tuple(shots), charged_credits=charged)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    shown = public_url(url)
    return urlsplit(shown).netloc or shown
