"""A Hypothesis state machine drives the Ledger with random estimates, jobs, shot claims, completions,
failures, pauses, cancels, purchases, clock moves and refills, and checks after every step that the
books agree with an independent model of the rules (on SQLite and on PostgreSQL).

Budgets and caps (its own block of rules, model and invariants below): project budgets set,
replaced and removed, member caps set and removed, jobs sent for projects by two members; a
`refuse` budget and a cap are never passed, and the service's figures agree with the model's.
"""

from __future__ import annotations

import calendar
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from srv_helpers import Books, ManualClock, make_books
from support import prices

from act3_credits.core import pricing
from act3_server import db, topup
from act3_server.ledger import Claim, Ledger, LedgerError

ENGINES = list(prices.ENGINES)
TIERS = list(prices.TIERS)

shot_specs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["sh010", "sh020", "Sh030", "crowd"]),
        "engine": st.sampled_from(ENGINES),
        "tier": st.sampled_from(TIERS),
        "duration_s": st.one_of(st.integers(1, 15), st.floats(0.5, 20, allow_nan=False)),
    }
)


def is_billing_day(d: date, billing_day: int) -> bool:
    return d.day == min(billing_day, calendar.monthrange(d.year, d.month)[1])


@dataclass
class JobUse:
    """What a job counts against budgets and caps: its estimate less what was released."""

    project: str | None
    period: date
    member_id: int
    used: int
    charged: int = 0


@dataclass
class LimitsModel:
    """Budgets and caps, written again plainly: a job counts in the billing period it was sent in."""

    budgets: dict[str, tuple[int, str, str, int]] = field(
        default_factory=dict
    )  # project -> credits, period, action, floor
    caps: dict[int, tuple[int, int]] = field(default_factory=dict)  # member id -> cap, floor
    jobs: dict[int, JobUse] = field(default_factory=dict)  # job number -> use

    def project_use(self, project: str, period: str, now_period: date) -> tuple[int, int]:
        mine = [j for j in self.jobs.values() if j.project == project and (period == "total" or j.period == now_period)]
        return sum(j.charged for j in mine), sum(j.used - j.charged for j in mine)

    def member_use(self, member_id: int, now_period: date) -> int:
        return sum(j.used for j in self.jobs.values() if j.member_id == member_id and j.period == now_period)

    def verdict(
        self, member_id: int, project: str | None, costs: list[int], now_period: date
    ) -> tuple[str, int | None]:
        """("within" | "member_cap_exceeded" | "budget_exceeded" | "warn" | "pause", pause_before)."""
        total = sum(costs)
        if member_id in self.caps and self.member_use(member_id, now_period) + total > self.caps[member_id][0]:
            return "member_cap_exceeded", None
        if project is None or project not in self.budgets:
            return "within", None
        credits, period, action, _floor = self.budgets[project]
        used = sum(self.project_use(project, period, now_period))
        if used + total <= credits:
            return "within", None
        if action == "refuse":
            return "budget_exceeded", None
        if action == "warn":
            return "warn", None
        for i in range(len(costs)):
            if used + sum(costs[: i + 1]) > credits:
                return "pause", i
        raise AssertionError("unreachable: the total crosses")


@dataclass
class Model:
    """The rules, written again as plainly as possible."""

    plan: pricing.Plan
    billing_day: int
    last_refill_day: date
    monthly: int
    rolled: int = 0
    purchased: int = 0
    held: int = 0
    refills: int = 1
    expected_charges: dict[int, int] = field(default_factory=dict)  # shot id -> price
    limits: LimitsModel = field(default_factory=lambda: LimitsModel())
    # --- scheduled jobs and auto top-up (issue 11, items 3 and 5) ---
    scheduled: list[tuple[int, int]] = field(default_factory=list)  # (job id, estimate), oldest first
    unheld: dict[int, int] = field(default_factory=dict)  # paused by their refill: job id -> estimate
    auto: tuple[int, pricing.CreditPack, int] | None = None  # (below, pack, cap in cents)
    auto_spent_cents: int = 0  # this period's
    auto_bought: int = 0

    def apply_due(self, now: datetime) -> None:
        d = self.last_refill_day
        refilled = False
        while d < now.date():
            d += timedelta(days=1)
            if is_billing_day(d, self.billing_day):
                moved = min(self.monthly, self.plan.rollover_cap - self.rolled)
                self.rolled += moved
                self.monthly = self.plan.monthly_allocation
                self.refills += 1
                self.last_refill_day = d
                refilled = True
        if refilled:
            self.after_refills()

    def after_refills(self) -> None:
        """A new period: auto top-up's cap starts again; scheduled jobs hold in order, or pause (past
        their member's cap, or past the balance); a started one counts in the period it starts in."""
        self.auto_spent_cents = 0
        for job_id, cost in self.scheduled:
            self.start_or_pause(job_id, cost, unheld=False)
        self.scheduled = []

    def start_or_pause(self, job_id: int, cost: int, unheld: bool) -> str | None:
        """Hold a scheduled job (at its refill) or one its refill paused (on resume): None, or why not."""
        use = self.limits.jobs[job_id]
        period = self.last_refill_day
        verdict, _ = self.limits.verdict(use.member_id, use.project, [cost], period)
        why = "member_cap_exceeded" if verdict == "member_cap_exceeded" else None
        if why is None and cost > self.available:
            why = "insufficient_credits"
        if why is not None:
            if not unheld:
                self.unheld[job_id] = cost
            return why
        self.unheld.pop(job_id, None)
        self.hold(cost)
        self.limits.jobs[job_id] = JobUse(use.project, period, use.member_id, cost)
        return None

    def hold(self, amount: int) -> None:
        """Hold `amount`; if `available` crosses auto top-up's threshold, buy its pack within the cap."""
        before = self.available
        self.held += amount
        if self.auto is None:
            return
        below, pack, cap = self.auto
        if self.available < below <= before and self.auto_spent_cents + pack.price_cents <= cap:
            self.purchased += pack.credits
            self.auto_spent_cents += pack.price_cents
            self.auto_bought += 1

    @property
    def available(self) -> int:
        return self.monthly + self.rolled + self.purchased - self.held

    def charge(self, amount: int) -> None:
        for name in ("monthly", "rolled", "purchased"):
            take = min(amount, getattr(self, name))
            setattr(self, name, getattr(self, name) - take)
            amount -= take
        assert amount == 0


class LedgerMachine(RuleBasedStateMachine):
    ledger_engine: Any = None  # set by the test before running

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
        self.ledger = Ledger(self.ledger_engine, self.clock)
        self.books: Books | None = None
        self.model: Model | None = None
        self.jobs: list[int] = []
        self.claims: list[Claim] = []
        self.workers = 0
        self.seen_seq = 0  # issue 11: events read so far, and refill starts per job
        self.refill_starts: Counter[int] = Counter()

    @initialize(
        plan=st.sampled_from(["starter", "pro", "enterprise"]),
        billing_day=st.sampled_from([1, 15, 28, 29, 30, 31]),
        start_offset_h=st.integers(0, 24 * 40),
        packs=st.lists(st.sampled_from([p.id for p in pricing.CREDIT_PACKS]), max_size=2),
        months=st.integers(0, 2),
    )
    def setup(self, plan: str, billing_day: int, start_offset_h: int, packs: list[str], months: int) -> None:
        self.clock.advance(hours=start_offset_h)
        self.books = make_books(self.ledger, self.clock, plan, billing_day, name=f"org-{uuid.uuid4().hex}")
        acct = self.books.account()
        self.model = Model(pricing.plan(plan), billing_day, acct["period_start"], pricing.plan(plan).monthly_allocation)
        # Start most examples with purchased and rolled-over credits in the bank, where the order matters.
        for pack in packs:
            self.ledger.purchase(self.books.owner, pack)
            self.model.purchased += pricing.pack(pack).credits
        self.clock.advance(days=31 * months)
        self.model.apply_due(self.clock.now)

    def teardown(self) -> None:
        # Examples share one database: leave nothing runnable for the next example's claims.
        if self.books is not None:
            for job_id in self.jobs:
                try:
                    self.ledger.cancel(self.books.editor, job_id)
                except LedgerError:
                    pass

    # --- rules -------------------------------------------------------------------------------------

    @rule(specs=st.lists(shot_specs, min_size=1, max_size=4))
    def estimate(self, specs: list[dict[str, Any]]) -> None:
        assert self.books and self.model
        self.model.apply_due(self.clock.now)
        est = self.ledger.estimate(self.books.editor, specs)
        costs = [prices.credits(s) for s in specs]  # from the price list, by hand
        assert [s["credits"] for s in est["shots"]] == costs and est["total"] == sum(costs)
        assert est["available"] == self.model.available
        allowed = self.model.plan.allowed_tiers
        assert [b["name"] for b in est["blocked"]] == [s["name"] for s in specs if s["tier"] not in allowed]

    @rule(specs=st.lists(shot_specs, min_size=1, max_size=5), idem=st.booleans())
    def create_job(self, specs: list[dict[str, Any]], idem: bool) -> None:
        self._create(specs, idem)

    @rule(frac=st.floats(0.0, 1.3), fail_every=st.sampled_from([0, 3]))
    def drain(self, frac: float, fail_every: int) -> None:
        """A batch costing all of monthly plus `frac` of the bank, rendered at once: charges reach
        into the bank (rolled-over, then purchased) or, past what is left, get a 402."""
        assert self.model
        self.model.apply_due(self.clock.now)
        m = self.model
        target = m.monthly + int((m.rolled + m.purchased) * frac) - m.held
        n = max(1, min(80, target // 7_350))
        self._create([{"name": "drain", "engine": "seedance-2.0", "tier": "high", "duration_s": 15}] * n, False)
        self.render_everything(fail_every)

    def _create(
        self, specs: list[dict[str, Any]], idem: bool, project: str | None = None, role: str = "editor"
    ) -> None:
        assert self.books and self.model
        costs = [prices.credits(s) for s in specs]  # from the price list, by hand
        self.model.apply_due(self.clock.now)
        actor = self.books.actors[role]
        limits = self.model.limits
        verdict, pause_before = limits.verdict(actor.member_id, project, costs, self.model.last_refill_day)
        key = uuid.uuid4().hex if idem else None
        try:
            result = self.ledger.create_job(actor, "batch", specs, key, project=project)
        except LedgerError as err:
            if err.code == "tier_not_allowed":
                assert any(s["tier"] not in self.model.plan.allowed_tiers for s in specs)
            elif err.code in ("member_cap_exceeded", "budget_exceeded"):
                assert sum(costs) <= self.model.available and err.code == verdict
            else:
                assert err.code == "insufficient_credits"
                assert sum(costs) > self.model.available
            return
        assert all(s["tier"] in self.model.plan.allowed_tiers for s in specs)
        assert sum(costs) <= self.model.available
        assert verdict in ("within", "warn", "pause")  # never past a cap or a refuse budget
        self.model.hold(sum(costs))
        job = result.body
        assert job["estimated_credits"] == sum(costs) == job["held"]
        assert job["project"] == project
        assert [w["code"] for w in job.get("warnings", [])] == {
            "within": [],
            "warn": ["budget_warning"],
            "pause": ["budget_pause"],
        }[verdict]
        assert job["status"] == ("paused" if pause_before == 0 else "queued")
        limits.jobs[job["id"]] = JobUse(project, self.model.last_refill_day, actor.member_id, sum(costs))
        self.jobs.append(job["id"])
        with db.read_tx(self.ledger.engine) as conn:
            internal = conn.execute(
                select(db.jobs.c.id).where(db.jobs.c.org_id == self.books.org_id, db.jobs.c.number == job["id"])
            ).scalar_one()
            for sid, idx in conn.execute(select(db.shots.c.id, db.shots.c.idx).where(db.shots.c.job_id == internal)):
                self.model.expected_charges[sid] = costs[idx]
        if key:  # a replay changes nothing
            again = self.ledger.create_job(actor, "batch", specs, key, project=project)
            assert again.replayed and again.body == job

    @rule()
    def claim(self) -> None:
        self.workers += 1
        self.model.apply_due(self.clock.now)  # type: ignore[union-attr]
        # A lease of an hour: a step of this machine on a loaded machine can take longer than the
        # default 10 s of real time, and an expired lease is (rightly) taken over by the next claim.
        c = self.ledger.claim_next_shot(f"w{self.workers}", lease_s=3600)
        if c is not None:
            assert c.org_id == self.books.org_id  # type: ignore[union-attr]
            assert all(o.shot_id != c.shot_id for o in self.claims)  # never two live claims on one shot
            assert all(o.job_id != c.job_id for o in self.claims)  # one shot at a time per job
            self.claims.append(c)

    @precondition(lambda self: self.claims)
    @rule(data=st.data(), fail=st.booleans())
    def finish_shot(self, data: st.DataObject, fail: bool) -> None:
        self._finish(self.claims.pop(data.draw(st.integers(0, len(self.claims) - 1))), fail)

    @rule(fail_every=st.sampled_from([0, 2, 5]))
    def render_all(self, fail_every: int) -> None:
        self.render_everything(fail_every)

    def render_everything(self, fail_every: int) -> None:
        """Many shots in one step: enough spending to reach the bank."""
        n = 0
        while (c := self.ledger.claim_next_shot("bulk")) is not None:
            n += 1
            self._finish(c, bool(fail_every) and n % fail_every == 0)

    def _finish(self, c: Claim, fail: bool) -> None:
        assert self.model
        self.model.apply_due(self.clock.now)
        if fail:
            if self.ledger.fail_shot(c, "random failure"):
                self.model.held -= c.credits
                self.model.limits.jobs[c.job_number].used -= c.credits  # budgets: released
            return
        monthly_before = self.model.monthly
        if not self.ledger.complete_shot(c):
            return
        assert c.credits == self.model.expected_charges[c.shot_id]  # estimate == charge
        self.model.held -= c.credits
        self.model.charge(c.credits)
        self.model.limits.jobs[c.job_number].charged += c.credits  # budgets: held becomes spent
        with db.read_tx(self.ledger.engine) as conn:
            item = conn.execute(select(db.transactions).where(db.transactions.c.shot_id == c.shot_id)).one()
        # Monthly first, then the bank: one item, split per bucket.
        assert item.monthly_delta == -min(c.credits, monthly_before)
        assert item.bank_delta == -(c.credits - min(c.credits, monthly_before))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), action=st.sampled_from(["pause", "resume", "cancel"]))
    def control(self, data: st.DataObject, action: str) -> None:
        assert self.books and self.model
        job_id = data.draw(st.sampled_from(self.jobs))
        self.model.apply_due(self.clock.now)
        self.ledger.credits(self.books.org_id)  # the refill the model applied (it may start this job)
        before = self.ledger.get_job(self.books.editor, job_id)
        try:
            job = getattr(self.ledger, action)(self.books.editor, job_id)
        except LedgerError as err:
            if err.code in ("insufficient_credits", "member_cap_exceeded"):  # a job its refill paused
                assert action == "resume" and job_id in self.model.unheld
                assert self.model.start_or_pause(job_id, self.model.unheld[job_id], unheld=True) == err.code
                return
            assert err.code == "invalid_state"
            assert before["status"] in ("completed", "failed", "canceled", "scheduled") or action == "resume"
            return
        assert before["status"] != "scheduled" or action == "cancel"
        if action == "resume" and job_id in self.model.unheld:
            assert self.model.start_or_pause(job_id, self.model.unheld[job_id], unheld=True) is None
        if action == "cancel":
            assert job["held"] == 0 and job["status"] == "canceled"
            self.model.held -= before["held"]
            self.model.limits.jobs[job_id].used -= before["held"]  # budgets: released
            self.model.unheld.pop(job_id, None)
            self.model.scheduled = [(j, c) for j, c in self.model.scheduled if j != job_id]
            self.claims = [c for c in self.claims if c.job_id != job_id]  # those can no longer charge

    @rule(
        pack=st.sampled_from([p.id for p in pricing.CREDIT_PACKS]), role=st.sampled_from(["owner", "admin", "editor"])
    )
    def purchase(self, pack: str, role: str) -> None:
        assert self.books and self.model
        self.model.apply_due(self.clock.now)
        try:
            self.ledger.purchase(self.books.actors[role], pack)
        except LedgerError as err:
            assert err.code == "forbidden" and role == "editor"
            return
        self.model.purchased += pricing.pack(pack).credits

    @rule(hours=st.integers(1, 24 * 75), how=st.sampled_from(["lazy", "billing_run", "later"]))
    def move_clock(self, hours: int, how: str) -> None:
        self.clock.advance(hours=hours)
        if how == "billing_run":
            self.ledger.refill_due(at=self.clock.now)
        elif how == "lazy":
            self.ledger.credits(self.books.org_id)  # type: ignore[union-attr]
        # "later": the next operation that touches the account applies it

    @rule(years=st.integers(3, 60), how=st.sampled_from(["lazy", "billing_run", "later"]))
    def jump_years(self, years: int, how: str) -> None:
        """The dev clock jumping decades: hundreds of billing dates pass at once."""
        self.move_clock(hours=24 * 365 * years + 7, how=how)

    # --- budgets and caps: rules --------------------------------------------------------------------

    @rule(
        project=st.sampled_from(["p1", "p2"]),
        credits=st.one_of(st.integers(0, 40_000), st.just(10**15)),
        period=st.sampled_from(["billing_period", "total"]),
        action=st.sampled_from(["warn", "pause", "refuse"]),
        role=st.sampled_from(["owner", "admin", "editor"]),
    )
    def set_budget(self, project: str, credits: int, period: str, action: str, role: str) -> None:
        assert self.books and self.model
        self.model.apply_due(self.clock.now)
        try:
            got = self.ledger.budgets.put(self.books.actors[role], project, credits, period, action)
        except LedgerError as err:
            assert err.code == "forbidden" and role == "editor"
            return
        limits = self.model.limits
        spent, held = limits.project_use(project, period, self.model.last_refill_day)
        assert (got["spent"], got["held"], got["left"]) == (spent, held, credits - spent - held)
        # Lowered below what is already used: no new job may add to it, but it may stay above.
        limits.budgets[project] = (credits, period, action, spent + held)

    @rule(project=st.sampled_from(["p1", "p2"]))
    def delete_budget(self, project: str) -> None:
        assert self.books and self.model
        try:
            self.ledger.budgets.delete(self.books.owner, project)
        except LedgerError as err:
            assert err.code == "not_found" and project not in self.model.limits.budgets
            return
        del self.model.limits.budgets[project]

    @rule(cap=st.one_of(st.none(), st.integers(0, 60_000)))
    def set_cap(self, cap: int | None) -> None:
        assert self.books and self.model
        self.model.apply_due(self.clock.now)
        editor = self.books.editor
        got = self.ledger.budgets.set_cap(self.books.actors["admin"], editor.member_id, cap)
        limits = self.model.limits
        if cap is None:
            assert got["cap"] is None
            limits.caps.pop(editor.member_id, None)
            return
        used = limits.member_use(editor.member_id, self.model.last_refill_day)
        assert got["cap"]["left"] == cap - used
        limits.caps[editor.member_id] = (cap, used)

    @rule(
        specs=st.lists(shot_specs, min_size=1, max_size=5),
        project=st.sampled_from(["p1", "p2", None]),
        role=st.sampled_from(["editor", "admin"]),
        idem=st.booleans(),
    )
    def create_project_job(self, specs: list[dict[str, Any]], project: str | None, role: str, idem: bool) -> None:
        self._create(specs, idem, project, role)

    # --- budgets and caps: invariants ---------------------------------------------------------------

    @invariant()
    def budgets_and_caps_are_never_passed(self) -> None:
        if self.books is None or self.model is None:
            return
        self.model.apply_due(self.clock.now)
        limits, period = self.model.limits, self.model.last_refill_day
        listed = {b["project"]: b for b in self.ledger.budgets.list_budgets(self.books.actors["viewer"])["budgets"]}
        assert set(listed) == set(limits.budgets)
        for project, (credits, kind, action, floor) in limits.budgets.items():
            spent, held = limits.project_use(project, kind, period)
            assert (listed[project]["spent"], listed[project]["held"]) == (spent, held)
            if action == "refuse":
                assert spent + held <= max(credits, floor)
        editor = self.books.editor
        cap = self.ledger.me(editor)["member"]["cap"]
        if editor.member_id not in limits.caps:
            assert cap is None
        else:
            credits, floor = limits.caps[editor.member_id]
            used = limits.member_use(editor.member_id, period)
            assert (cap["credits_per_period"], cap["spent"] + cap["held"]) == (credits, used)
            assert used <= max(credits, floor)

    # --- scheduled jobs and auto top-up (issue 11, items 3 and 5) ----------------------------------

    @rule(specs=st.lists(shot_specs, min_size=1, max_size=3), frac=st.sampled_from([0.0, 0.4, 0.7, 1.3]))
    def defer(self, specs: list[dict[str, Any]], frac: float) -> None:
        """A batch deferred to the next period, with shots adding up to about `frac` of what the
        next refill will leave available: some fit, some outgrow it (paused at the refill)."""
        assert self.books and self.model
        self.model.apply_due(self.clock.now)
        m = self.model
        after_refill = (
            m.plan.monthly_allocation
            + m.rolled
            + min(m.monthly, m.plan.rollover_cap - m.rolled)
            + m.purchased
            - m.held
            - sum(c for _, c in m.scheduled)
        )
        n = min(120, int(after_refill * frac) // 7_350)
        specs = specs + [{"name": "defer", "engine": "seedance-2.0", "tier": "high", "duration_s": 15}] * n
        costs = [prices.credits(s) for s in specs]
        try:
            result = self.ledger.create_job(self.books.editor, "later", specs, None, start="next_period")
        except LedgerError as err:
            assert err.code == "tier_not_allowed"
            assert any(s["tier"] not in self.model.plan.allowed_tiers for s in specs)
            return
        job = result.body
        assert (job["status"], job["held"], job["estimated_credits"]) == ("scheduled", 0, sum(costs))
        self.model.scheduled.append((job["id"], sum(costs)))
        # Counts against no period until its refill starts it (Model.start_or_pause).
        self.model.limits.jobs[job["id"]] = JobUse(None, date.min, self.books.editor.member_id, 0)
        self.jobs.append(job["id"])
        with db.read_tx(self.ledger.engine) as conn:
            internal = conn.execute(
                select(db.jobs.c.id).where(db.jobs.c.org_id == self.books.org_id, db.jobs.c.number == job["id"])
            ).scalar_one()
            for sid, idx in conn.execute(select(db.shots.c.id, db.shots.c.idx).where(db.shots.c.job_id == internal)):
                self.model.expected_charges[sid] = costs[idx]

    @precondition(lambda self: self.model is not None and self.model.scheduled)
    @rule(how=st.sampled_from(["lazy", "billing_run", "later"]))
    def to_the_next_refill(self, how: str) -> None:
        """Just past the next billing date, where the scheduled jobs start."""
        assert self.model
        self.model.apply_due(self.clock.now)
        d = self.clock.now.date() + timedelta(days=1)
        while not is_billing_day(d, self.model.billing_day):
            d += timedelta(days=1)
        hours = (datetime(d.year, d.month, d.day, 1, tzinfo=UTC) - self.clock.now) / timedelta(hours=1)
        self.move_clock(hours=int(hours) + 1, how=how)

    @rule(
        enabled=st.booleans(),
        margin=st.sampled_from([-50_000, 0, 1_000, 30_000, 300_000]),
        pack=st.sampled_from([p.id for p in pricing.CREDIT_PACKS]),
        packs_per_period=st.integers(0, 3),
        role=st.sampled_from(["owner", "owner", "admin"]),
    )
    def set_auto_top_up(self, enabled: bool, margin: int, pack: str, packs_per_period: int, role: str) -> None:
        """A threshold `margin` under what is available now: the next hold bigger than it crosses."""
        assert self.books and self.model
        self.model.apply_due(self.clock.now)
        below = max(0, self.model.available - margin)
        cap = pricing.pack(pack).price_cents * packs_per_period
        try:
            setting = topup.write(self.ledger, self.books.actors[role], enabled, below, pack, cap)
        except LedgerError as err:
            assert err.code == "forbidden" and role != "owner"
            return
        assert (setting["enabled"], setting["below"], setting["max_per_period_cents"]) == (enabled, below, cap)
        assert setting["spent_this_period_cents"] == self.model.auto_spent_cents
        self.model.auto = (below, pricing.pack(pack), cap) if enabled else None

    @invariant()
    def scheduled_jobs_and_auto_top_ups_agree_with_the_model(self) -> None:
        if self.books is None or self.model is None:
            return
        self.model.apply_due(self.clock.now)
        self.ledger.credits(self.books.org_id)
        org = self.books.org_id
        with db.read_tx(self.ledger.engine) as conn:
            jobs = {j.number: j for j in conn.execute(select(db.jobs).where(db.jobs.c.org_id == org))}
            bought = conn.execute(select(db.auto_top_ups).where(db.auto_top_ups.c.org_id == org)).all()
            auto_items = conn.execute(
                select(func.count()).where(db.transactions.c.org_id == org, db.transactions.c.auto.is_(True))
            ).scalar_one()
        assert sorted(n for n, j in jobs.items() if j.status == "scheduled") == sorted(
            n for n, _ in self.model.scheduled
        )
        for number, _cost in self.model.scheduled:
            assert jobs[number].held == 0 and jobs[number].charged_credits == 0
        for number in self.model.unheld:
            assert (jobs[number].status, jobs[number].held) == ("paused", 0)
        # Started exactly once: never more than one refill start (or pause) per job.
        for e in self.ledger.events_after(org, self.seen_seq, 100_000):
            self.seen_seq = e["seq"]
            if e["type"] == "job.status" and e["data"]["reason"] in ("refill", "insufficient_credits"):
                self.refill_starts[e["data"]["job_id"]] += 1
        assert all(n == 1 for n in self.refill_starts.values())
        # Auto top-up: what the model bought, once per crossing, never past the period's cap.
        assert len(bought) == auto_items == self.model.auto_bought
        assert len({b.crossing for b in bought}) == len(bought)
        spent_now = sum(b.price_cents for b in bought if b.period_start == self.books.account()["period_start"])
        assert spent_now == self.model.auto_spent_cents

    # --- invariants --------------------------------------------------------------------------------

    @invariant()
    def books_agree_with_the_model(self) -> None:
        if self.books is None or self.model is None:
            return
        self.model.apply_due(self.clock.now)
        self.ledger.credits(self.books.org_id)  # applies a refill still pending, as any read would
        acct = self.books.account()
        assert min(acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"], acct["held"]) >= 0
        got = (acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"], acct["held"])
        assert got == (self.model.monthly, self.model.rolled, self.model.purchased, self.model.held)
        self.books.assert_books_balance()  # every balance equals a replay of the journal
        org = self.books.org_id
        with db.read_tx(self.ledger.engine) as conn:
            refills = conn.execute(
                select(func.coalesce(func.sum(db.refills.c.periods), 0)).where(db.refills.c.org_id == org)
            ).scalar_one()
            assert refills == self.model.refills  # exactly once per period (a run of alike ones is one row)
            jobs = conn.execute(select(db.jobs).where(db.jobs.c.org_id == org)).all()
            shots = conn.execute(
                select(db.shots).join(db.jobs, db.jobs.c.id == db.shots.c.job_id).where(db.jobs.c.org_id == org)
            ).all()
            renders = conn.execute(
                select(db.transactions).where(db.transactions.c.org_id == org, db.transactions.c.kind == "render")
            ).all()
            held_per_job = dict(
                conn.execute(
                    select(db.journal.c.job_id, func.sum(db.journal.c.delta))
                    .where(db.journal.c.org_id == org, db.journal.c.bucket == "held")
                    .group_by(db.journal.c.job_id)
                ).all()
            )
        for job in jobs:
            if job.status == "scheduled" or job.number in self.model.unheld:  # issue 11: hold nothing yet
                assert job.held == 0 and held_per_job.get(job.id, 0) == 0
                continue
            mine = [s for s in shots if s.job_id == job.id]
            open_credits = sum(s.credits for s in mine if s.status in ("queued", "processing"))
            done_credits = sum(s.credits for s in mine if s.status == "completed")
            # A hold is charged at most what it holds, and what is left of it is exactly the open shots.
            assert job.held == open_credits and job.charged_credits == done_credits
            assert job.charged_credits + job.held <= job.estimated_credits
            assert held_per_job.get(job.id, 0) == job.held  # released exactly once, never twice
            if job.status in ("completed", "failed", "canceled"):
                assert job.held == 0
        assert acct["held"] == sum(j.held for j in jobs)
        charged = {r.shot_id: -r.credits for r in renders}
        assert len(charged) == len(renders)  # a shot is charged at most once
        assert charged == {s.id: self.model.expected_charges[s.id] for s in shots if s.status == "completed"}


def test_ledger_state_machine(database_url: str) -> None:
    engine = db.make_engine(database_url, pool_size=5)
    from act3_server import migrate

    migrate.upgrade(engine)
    LedgerMachine.ledger_engine = engine
    try:
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=10,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                database=None,
            ),
        )
    finally:
        engine.dispose()
