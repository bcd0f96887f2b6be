"""Project budgets and member caps: what they allow, and the endpoints that set them.

The rules (docs/api.md, "Budgets and caps"):
- A job counts against the billing period its hold was taken in (`jobs.period_start`), whenever its
  shots render: a project's or a member's use of a period is the charged credits plus what is still
  held of the jobs sent in it (`total` budgets: of every job of the project). A charge moves credits
  from held to charged and a release lowers held, so only a new hold can raise a use: checking each
  hold is enough for a `refuse` budget and a cap never to be passed.
- The check runs in the hold's own transaction, after the org's account row is locked
  (`Ledger._create_job`): every hold of an org takes that lock, so no two checks interleave.
  Setting a budget or a cap takes the same lock and counts the org's limits into
  `accounts.spend_limits`; the driver's hold (`_create_job_fast`) only takes orgs where that is 0.
- Over a member cap: 402 `member_cap_exceeded`. Over a project budget: `refuse` 402
  `budget_exceeded`; `pause` the job is accepted and stops before the first shot that would cross
  (`jobs.pause_before`); `warn` it is accepted with a warning. The cap is checked first.
Ledger calls in here from small hooks marked "budgets:"; nothing here changes a balance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from act3_credits.core.vocabulary import PROJECT_MAX_CHARS, BudgetAction, BudgetPeriod, ErrorCode, Verdict

from . import billing
from .db import accounts, budgets, jobs, members, read_tx, to_db

if TYPE_CHECKING:
    from .ledger import Actor, Ledger

ROLES_THAT_SET_LIMITS = frozenset({"owner", "admin"})
# Far beyond any plan, well inside a BIGINT and a JSON number every client reads exactly.
MAX_LIMIT_CREDITS = 10**15


def _error(code: str, message: str, **extra: Any) -> Exception:
    from .ledger import LedgerError  # ledger imports this module

    return LedgerError(code, message, **extra)


def _invalid(loc: list[str], message: str) -> Exception:
    return _error("validation_error", message, details=[{"loc": loc, "msg": message}])


def check_project(project: Any, loc: list[str]) -> str:
    """A project name: 1-64 characters, none of them a control character (NUL included)."""
    if not isinstance(project, str) or not project.strip():
        raise _invalid(loc, "project must be a non-empty string, not only spaces.")
    if len(project) > PROJECT_MAX_CHARS:
        raise _invalid(loc, f"project must be at most {PROJECT_MAX_CHARS} characters; this one has {len(project):,}.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in project):
        raise _invalid(loc, "project must not contain control characters.")
    if any("\ud800" <= ch <= "\udfff" for ch in project):  # JSON's "\ud800": no UTF-8 for it, so no row
        raise _invalid(loc, "project must be valid Unicode text (no lone surrogates).")
    return project


def check_path_text(raw_path: Any) -> None:
    """A budget's path as the client sent it: its percent-escapes must spell UTF-8 text. The
    server decodes one that does not (`%FF`) as U+FFFD, so without this "/v1/budgets/%FF" would
    set or delete the budget of a project named "\ufffd", not the one the client meant."""
    if isinstance(raw_path, bytes):
        try:
            unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid(["path", "project"], "project must be UTF-8 text, percent-encoded byte by byte.") from None


def _check_credits(credits: Any, loc: list[str]) -> int:
    if type(credits) is float and credits.is_integer():  # JSON's 5000.0 is the integer 5000
        credits = int(credits)
    if type(credits) is not int or not 0 <= credits <= MAX_LIMIT_CREDITS:
        raise _invalid(loc, f"{loc[-1]} must be a whole number of credits from 0 to {MAX_LIMIT_CREDITS:,}.")
    return credits


def _require_manager(actor: Actor, what: str) -> None:
    if actor.role not in ROLES_THAT_SET_LIMITS:
        raise _error("forbidden", f"The {actor.role} role cannot {what}; ask the owner or an admin.")


# --- what a project and a member have used ---------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    spent: int  # charged
    held: int

    @property
    def used(self) -> int:
        return self.spent + self.held


# Built once (a hold with limits runs them under the account lock): ranges of the two jobs indexes.
_SUMS = (func.coalesce(func.sum(jobs.c.charged_credits), 0), func.coalesce(func.sum(jobs.c.held), 0))
_PROJECT_EVER = select(*_SUMS).where(jobs.c.org_id == bindparam("org_id"), jobs.c.project == bindparam("project"))
_PROJECT_IN_PERIOD = _PROJECT_EVER.where(jobs.c.period_start == bindparam("period_start"))
_MEMBER_IN_PERIOD = select(*_SUMS).where(
    jobs.c.member_id == bindparam("member_id"), jobs.c.period_start == bindparam("period_start")
)
_BUDGET = select(budgets.c.credits, budgets.c.period, budgets.c.action).where(
    budgets.c.org_id == bindparam("org_id"), budgets.c.project == bindparam("project")
)
_CAP = select(members.c.cap_credits).where(members.c.id == bindparam("member_id"))


def project_usage(conn: Connection, org_id: int, project: str, period_start: date | None) -> Usage:
    """Charged and held of the project's jobs sent in `period_start`'s period (None: ever)."""
    params = {"org_id": org_id, "project": project, "period_start": period_start}
    spent, held = conn.execute(_PROJECT_EVER if period_start is None else _PROJECT_IN_PERIOD, params).one()
    return Usage(int(spent), int(held))


def member_usage(conn: Connection, member_id: int, period_start: date) -> Usage:
    spent, held = conn.execute(_MEMBER_IN_PERIOD, {"member_id": member_id, "period_start": period_start}).one()
    return Usage(int(spent), int(held))


@dataclass(frozen=True)
class Budget:
    project: str
    credits: int
    period: str
    action: str

    def usage(self, conn: Connection, org_id: int, period_start: date) -> Usage:
        scope = period_start if self.period == BudgetPeriod.BILLING_PERIOD else None
        return project_usage(conn, org_id, self.project, scope)

    def to_json(self, usage: Usage) -> dict[str, Any]:
        return {
            "project": self.project,
            "credits": self.credits,
            "period": self.period,
            "action": self.action,
            "spent": usage.spent,
            "held": usage.held,
            "left": self.credits - usage.used,  # below 0 only past a warn or pause budget, or one lowered
        }


def read_budget(conn: Connection, org_id: int, project: str) -> Budget | None:
    row = conn.execute(_BUDGET, {"org_id": org_id, "project": project}).first()
    return None if row is None else Budget(project, int(row.credits), row.period, row.action)


def cap_json(cap: int | None, usage: Usage | None, period_start: date) -> dict[str, Any] | None:
    if cap is None or usage is None:
        return None
    return {
        "credits_per_period": cap,
        "spent": usage.spent,
        "held": usage.held,
        "left": cap - usage.used,
        "period_start": period_start.isoformat(),
    }


def current_period(ledger: Ledger, org_id: int, now: datetime) -> date:
    """The billing period `now` is in: a period not refilled yet has no jobs, so counts from 0."""
    org = ledger.org(org_id)
    return billing.period_start(now.date(), org.billing_day)


# --- a batch against the limits --------------------------------------------------------------------


@dataclass
class Assessment:
    """What the member's cap and the project's budget say about a batch costing `costs`."""

    total: int
    period_start: date
    project: str | None = None
    budget: Budget | None = None
    budget_usage: Usage | None = None
    budget_verdict: str = Verdict.WITHIN
    pause_before: int | None = None  # the shot a `pause` budget stops the job before
    cap: int | None = None
    cap_usage: Usage | None = None
    cap_verdict: str = Verdict.WITHIN
    member: str = ""
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def budget_message(self) -> str:
        assert self.budget is not None and self.budget_usage is not None
        b, u = self.budget, self.budget_usage
        per = " a billing period" if b.period == BudgetPeriod.BILLING_PERIOD else " in total"
        head = (
            f"Project {b.project!r} has a budget of {b.credits:,} credits{per}; {u.spent:,} spent and "
            f"{u.held:,} held leave {max(0, b.credits - u.used):,}, and this batch needs {self.total:,}."
        )
        if self.budget_verdict == Verdict.REFUSE:
            return head + " Raise the budget or send fewer shots."
        if self.budget_verdict == Verdict.PAUSE:
            return (
                head + f" The job pauses before shot {self.pause_before + 1 if self.pause_before is not None else 1}."
            )
        return head

    def cap_message(self) -> str:
        assert self.cap is not None and self.cap_usage is not None
        u = self.cap_usage
        return (
            f"{self.member} may use {self.cap:,} credits a billing period; {u.spent:,} spent and {u.held:,} held "
            f"leave {max(0, self.cap - u.used):,}, and this batch needs {self.total:,}."
        )

    def budget_extra(self) -> dict[str, Any]:
        assert self.budget is not None and self.budget_usage is not None
        return {
            "project": self.budget.project,
            "budget": self.budget.credits,
            "spent": self.budget_usage.spent,
            "held": self.budget_usage.held,
            "needed": self.total,
        }

    def cap_extra(self) -> dict[str, Any]:
        assert self.cap is not None and self.cap_usage is not None
        return {"cap": self.cap, "spent": self.cap_usage.spent, "held": self.cap_usage.held, "needed": self.total}

    def to_json(self) -> dict[str, Any]:
        """The estimate's `budget` and `member_cap` (each None when there is none)."""
        budget = None
        if self.budget is not None and self.budget_usage is not None:
            budget = {
                **self.budget.to_json(self.budget_usage),
                "verdict": self.budget_verdict,
                "pause_before": self.pause_before,
                "message": self.budget_message() if self.budget_verdict != Verdict.WITHIN else None,
            }
        cap = cap_json(self.cap, self.cap_usage, self.period_start)
        if cap is not None:
            cap["verdict"] = self.cap_verdict
            cap["message"] = self.cap_message() if self.cap_verdict != Verdict.WITHIN else None
        return {"budget": budget, "member_cap": cap}

    @property
    def refused(self) -> bool:
        return Verdict.REFUSE in (self.budget_verdict, self.cap_verdict)


def assess(
    conn: Connection,
    org_id: int,
    member_id: int,
    member_name: str,
    project: str | None,
    costs: list[int],
    period_start: date,
) -> Assessment:
    total = sum(costs)
    out = Assessment(total=total, period_start=period_start, project=project, member=member_name)
    cap = conn.execute(_CAP, {"member_id": member_id}).scalar()
    if cap is not None:
        out.cap, out.cap_usage = int(cap), member_usage(conn, member_id, period_start)
        if out.cap_usage.used + total > out.cap:
            out.cap_verdict = Verdict.REFUSE
    if project is None:
        return out
    budget = read_budget(conn, org_id, project)
    if budget is None:
        return out
    usage = budget.usage(conn, org_id, period_start)
    out.budget, out.budget_usage = budget, usage
    if usage.used + total <= budget.credits:
        return out
    out.budget_verdict = budget.action
    if budget.action == BudgetAction.PAUSE:
        running = usage.used
        for i, c in enumerate(costs):
            running += c
            if running > budget.credits:
                out.pause_before = i
                break
    return out


def enforce(found: Assessment) -> list[dict[str, Any]]:
    """Raise the 402 a refusing cap or budget gives; else the warnings the job's answer carries."""
    if found.cap_verdict == Verdict.REFUSE:
        raise _error(ErrorCode.MEMBER_CAP_EXCEEDED, found.cap_message(), member=found.member, **found.cap_extra())
    if found.budget_verdict == Verdict.WITHIN:
        return []
    if found.budget_verdict == Verdict.REFUSE:
        raise _error(ErrorCode.BUDGET_EXCEEDED, found.budget_message(), **found.budget_extra())
    code = "budget_pause" if found.budget_verdict == Verdict.PAUSE else "budget_warning"
    return [{"code": code, "message": found.budget_message(), **found.budget_extra()}]


# --- the endpoints -----------------------------------------------------------------------------------


class Budgets:
    """`/v1/budgets` and `/v1/members`, over the ledger's transactions and locks."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _recount(self, conn: Connection, org_id: int) -> None:
        """accounts.spend_limits: the org's budgets and caps (its row is locked by the caller)."""
        n_budgets = select(func.count()).where(budgets.c.org_id == org_id).scalar_subquery()
        n_caps = select(func.count()).where(members.c.org_id == org_id, members.c.cap_credits.is_not(None))
        conn.execute(
            accounts.update()
            .where(accounts.c.org_id == org_id)
            .values(spend_limits=n_budgets + n_caps.scalar_subquery())
        )

    def list_budgets(self, actor: Actor) -> dict[str, Any]:
        period = current_period(self.ledger, actor.org_id, self.ledger.now())
        with read_tx(self.ledger.engine) as conn:
            rows = conn.execute(
                select(budgets.c.project, budgets.c.credits, budgets.c.period, budgets.c.action)
                .where(budgets.c.org_id == actor.org_id)
                .order_by(budgets.c.project)
            ).all()
            out = []
            for r in rows:
                b = Budget(r.project, int(r.credits), r.period, r.action)
                out.append(b.to_json(b.usage(conn, actor.org_id, period)))
        return {"budgets": out, "period_start": period.isoformat()}

    def put(
        self, actor: Actor, project: str, credits: Any, period: Any, action: Any, raw_path: Any = None
    ) -> dict[str, Any]:
        """`raw_path`: the request's path as sent (`check_path_text`), for the HTTP layer."""
        _require_manager(actor, "set a project budget")
        check_path_text(raw_path)
        check_project(project, ["path", "project"])
        credits = _check_credits(credits, ["body", "credits"])
        if period not in tuple(BudgetPeriod):
            raise _invalid(["body", "period"], "period must be 'billing_period' or 'total'.")
        if action not in tuple(BudgetAction):
            raise _invalid(["body", "action"], "action must be 'warn', 'pause' or 'refuse'.")
        now = self.ledger.now()
        with self.ledger._write() as conn:
            _org, acct = self.ledger._touch(conn, actor.org_id, now)  # the lock every hold takes
            values = {
                "credits": credits,
                "period": str(period),
                "action": str(action),
                "updated_at": to_db(now),
                "updated_by": actor.member_name,
            }
            changed = conn.execute(
                budgets.update().where(budgets.c.org_id == actor.org_id, budgets.c.project == project).values(**values)
            ).rowcount
            if not changed:
                conn.execute(budgets.insert().values(org_id=actor.org_id, project=project, **values))
                self._recount(conn, actor.org_id)
            b = Budget(project, credits, str(period), str(action))
            return {**b.to_json(b.usage(conn, actor.org_id, acct["period_start"])), "updated_by": actor.member_name}

    def delete(self, actor: Actor, project: str, raw_path: Any = None) -> dict[str, Any]:
        _require_manager(actor, "remove a project budget")
        check_path_text(raw_path)
        check_project(project, ["path", "project"])
        with self.ledger._write() as conn:
            self.ledger._lock_account(conn, actor.org_id)
            gone = conn.execute(
                budgets.delete().where(budgets.c.org_id == actor.org_id, budgets.c.project == project)
            ).rowcount
            if not gone:
                raise _error("not_found", f"Project {project!r} has no budget.")
            self._recount(conn, actor.org_id)
        return {"deleted": project}

    def members(self, actor: Actor) -> dict[str, Any]:
        period = current_period(self.ledger, actor.org_id, self.ledger.now())
        with read_tx(self.ledger.engine) as conn:
            rows = conn.execute(
                select(members.c.id, members.c.name, members.c.role, members.c.cap_credits)
                .where(members.c.org_id == actor.org_id)
                .order_by(members.c.id)
            ).all()
            return {
                "members": [self._member_json(conn, r.id, r.name, r.role, r.cap_credits, period) for r in rows],
                "period_start": period.isoformat(),
            }

    @staticmethod
    def _member_json(
        conn: Connection, member_id: int, name: str, role: str, cap: int | None, period: date
    ) -> dict[str, Any]:
        usage = member_usage(conn, member_id, period) if cap is not None else None
        return {"id": member_id, "name": name, "role": role, "cap": cap_json(cap, usage, period)}

    def set_cap(self, actor: Actor, member_id: int, credits: Any) -> dict[str, Any]:
        _require_manager(actor, "set a member's cap")
        if credits is not None:
            credits = _check_credits(credits, ["body", "credits_per_period"])
        now = self.ledger.now()
        with self.ledger._write() as conn:
            _org, acct = self.ledger._touch(conn, actor.org_id, now)
            row = conn.execute(
                select(members.c.id, members.c.name, members.c.role).where(
                    members.c.id == member_id, members.c.org_id == actor.org_id
                )
            ).first()
            if row is None:
                raise _error("not_found", f"Member {member_id} was not found.")  # also another org's
            conn.execute(members.update().where(members.c.id == member_id).values(cap_credits=credits))
            self._recount(conn, actor.org_id)
            return self._member_json(conn, row.id, row.name, row.role, credits, acct["period_start"])

    def my_cap(self, actor: Actor) -> dict[str, Any] | None:
        """`GET /v1/me`'s `member.cap`: the cap, and what is spent, held and left of it this period."""
        period = current_period(self.ledger, actor.org_id, self.ledger.now())
        with read_tx(self.ledger.engine) as conn:
            cap = conn.execute(select(members.c.cap_credits).where(members.c.id == actor.member_id)).scalar()
            if cap is None:
                return None
            return cap_json(int(cap), member_usage(conn, actor.member_id, period), period)

    def assess_estimate(self, actor: Actor, project: str | None, costs: list[int]) -> Assessment:
        period = current_period(self.ledger, actor.org_id, self.ledger.now())
        with read_tx(self.ledger.engine) as conn:
            return assess(conn, actor.org_id, actor.member_id, actor.member_name, project, costs, period)


__all__ = ["Assessment", "Budget", "Budgets", "Usage", "assess", "check_project", "enforce"]
