"""Budgets on the work, as the artist reads them (no bpy): the scene's project and its budget, the
member's cap, deferring to the next period, auto top-up, and what Draft first saved.

The service decides (a `refuse` budget or a cap is checked again in the hold's transaction); these
functions only say beforehand, from the cached `GET /v1/budgets`, `GET /v1/me` and
`GET /v1/account/auto-top-up`, what Confirm will meet, so the Cost Estimate never surprises. Every
price comes from `pricing.RateCard.price`; every figure reads through `formatting`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from . import formatting, pricing
from .values import value
from .vocabulary import PROJECT_MAX_CHARS, BudgetAction, Verdict

UNSAVED_PROJECT = "untitled"  # the project of a .blend that was never saved


def project_name(field: str, blend_path: str) -> str:
    """The project a job is sent for: the scene's field, else the .blend's name without `.blend`
    ("untitled" before the file is saved), cut to what the service takes."""
    name = " ".join((field or "").split())
    if not name:
        base = os.path.basename(blend_path or "")
        name = base[: -len(".blend")] if base.lower().endswith(".blend") else base
        name = " ".join(name.split()) or UNSAVED_PROJECT
    return name[:PROJECT_MAX_CHARS]


def _int(data: dict[str, Any], name: str) -> int:
    got = data.get(name)
    return int(got) if isinstance(got, int) and not isinstance(got, bool) else 0


# ---------------------------------------------------------------------------------------- budgets


@value
class Budget:
    """One project's budget (`GET /v1/budgets`): what it allows and what its jobs spent and hold."""

    project: str
    credits: int
    period: str
    action: str
    spent: int
    held: int
    left: int

    def __init__(
        self, project: str, credits: int, period: str, action: str, spent: int = 0, held: int = 0, left: int = 0
    ) -> None:
        self.__dict__.update(
            project=project, credits=credits, period=period, action=action, spent=spent, held=held, left=left
        )

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Budget:
        return cls(
            str(d.get("project") or ""),
            _int(d, "credits"),
            str(d.get("period") or ""),
            str(d.get("action") or BudgetAction.REFUSE),
            _int(d, "spent"),
            _int(d, "held"),
            _int(d, "left"),
        )

    def summary(self) -> str:
        """'3,000 of 5,000 cr left' (what the dialog's Project row reads)."""
        return f"{formatting.credits(self.left, unit=False)} of {formatting.credits(self.credits)} left"


def budgets_by_project(budgets: Sequence[dict[str, Any]] | None) -> dict[str, Budget]:
    """`GET /v1/budgets`'s list (as `Client.budgets` gives it), by project."""
    out: dict[str, Budget] = {}
    for d in budgets or ():
        if isinstance(d, dict):
            b = Budget.from_json(d)
            out[b.project] = b
    return out


@value
class MemberCap:
    """The member's own cap per billing period (`cap` of `GET /v1/me`)."""

    credits_per_period: int
    spent: int
    held: int
    left: int

    def __init__(self, credits_per_period: int, spent: int = 0, held: int = 0, left: int = 0) -> None:
        self.__dict__.update(credits_per_period=credits_per_period, spent=spent, held=held, left=left)

    @classmethod
    def from_me(cls, me: Any) -> MemberCap | None:
        """From `contract.Me` (its `cap`), or `GET /v1/me`'s JSON (`member.cap`)."""
        if isinstance(me, dict):
            member = me.get("member")
            cap = member.get("cap") if isinstance(member, dict) else None
        else:
            cap = getattr(me, "cap", None)
        if not isinstance(cap, dict) or cap.get("credits_per_period") is None:
            return None
        return cls(_int(cap, "credits_per_period"), _int(cap, "spent"), _int(cap, "held"), _int(cap, "left"))

    def summary(self) -> str:
        """'40,000 of 100,000 cr left this period'."""
        left = formatting.credits(self.left, unit=False)
        return f"{left} of {formatting.credits(self.credits_per_period)} left this period"


# ---------------------------------------------------------------------------------------- verdicts


@value
class Limits:
    """What the project's budget and the member's cap do with one batch, before it is sent.

    `verdict` is the strongest of the two (refuse > pause > warn > within); `message` says it in
    words; `pause_before` is the index of the shot a `pause` budget stops the job before.
    """

    project: str
    budget: Budget | None
    cap: MemberCap | None
    needed: int
    verdict: str
    message: str | None
    pause_before: int | None

    def __init__(
        self,
        project: str,
        budget: Budget | None,
        cap: MemberCap | None,
        needed: int,
        verdict: str = Verdict.WITHIN,
        message: str | None = None,
        pause_before: int | None = None,
    ) -> None:
        self.__dict__.update(
            project=project,
            budget=budget,
            cap=cap,
            needed=needed,
            verdict=verdict,
            message=message,
            pause_before=pause_before,
        )

    @property
    def refused(self) -> bool:
        return self.verdict == Verdict.REFUSE


def budget_refusal(budget: Budget, needed: int) -> str:
    return (
        f"Over the {budget.project} budget: this needs {formatting.credits(needed)}, "
        f"{formatting.credits(budget.left)} of its {formatting.credits(budget.credits)} are left."
    )


def cap_refusal(cap: MemberCap, needed: int) -> str:
    return (
        f"Over your cap: this needs {formatting.credits(needed)}, "
        f"{formatting.credits(cap.left)} of your {formatting.credits(cap.credits_per_period)} are left this period."
    )


def assess(project: str, budget: Budget | None, cap: MemberCap | None, shot_credits: Sequence[int]) -> Limits:
    """The batch (its shots' credits, in order) against the member's cap, then the project's budget,
    as the service checks them when it holds."""
    needed = sum(shot_credits)
    if cap is not None and needed > cap.left:
        return Limits(project, budget, cap, needed, Verdict.REFUSE, cap_refusal(cap, needed))
    if budget is None or needed <= budget.left:
        return Limits(project, budget, cap, needed)
    over = needed - max(budget.left, 0)
    if budget.action == BudgetAction.REFUSE:
        return Limits(project, budget, cap, needed, Verdict.REFUSE, budget_refusal(budget, needed))
    if budget.action == BudgetAction.PAUSE:
        running, stop = 0, 0
        for i, credits in enumerate(shot_credits):
            running += credits
            if running > budget.left:
                stop = i
                break
        message = f"The job will pause before shot {stop + 1}, where it crosses the {budget.project} budget."
        return Limits(project, budget, cap, needed, Verdict.PAUSE, message, stop)
    return Limits(
        project,
        budget,
        cap,
        needed,
        Verdict.WARN,
        f"{formatting.credits(over)} over the {budget.project} budget: it is sent anyway (warn).",
    )


# ---------------------------------------------------------------------------------------- defer


def defer_label(billing_date: str | None) -> str:
    """'Defer to 1 Dec': the refill that will start the deferred shots."""
    when = formatting.day_month(billing_date)
    return f"Defer to {when}" if when else "Defer to next period"


def starts_text(billing_date: str | None) -> str:
    """'starts 1 Dec' (a scheduled job in the Render Queue)."""
    when = formatting.day_month(billing_date)
    return f"starts {when}" if when else "starts at the next refill"


# ---------------------------------------------------------------------------------------- draft first


@value
class Drafted:
    """A shot as Draft first sees it: what its Draft render cost, and whether it goes up a tier."""

    name: str
    engine: str
    duration_s: float
    draft_cost: int  # what its last (Draft) render was charged
    final_tier: str
    approved: bool

    def __init__(
        self, name: str, engine: str, duration_s: float, draft_cost: int, final_tier: str, approved: bool
    ) -> None:
        self.__dict__.update(
            name=name,
            engine=engine,
            duration_s=duration_s,
            draft_cost=draft_cost,
            final_tier=final_tier,
            approved=approved,
        )


@value
class DraftSaving:
    """Draft first against every drafted shot at its final tier from the start."""

    drafts: int  # what the Draft renders cost
    upgrades: int  # the approved shots at their final tier
    all_final: int  # every drafted shot at its final tier, had Draft been skipped
    final_name: str  # 'High', or 'final' when the shots' final tiers differ

    def __init__(self, drafts: int, upgrades: int, all_final: int, final_name: str) -> None:
        self.__dict__.update(drafts=drafts, upgrades=upgrades, all_final=all_final, final_name=final_name)

    @property
    def draft_first(self) -> int:
        return self.drafts + self.upgrades

    @property
    def saved(self) -> int:
        return self.all_final - self.draft_first

    def lines(self) -> tuple[str, str]:
        """'Draft first: 1,560 cr drafts + 4,160 cr upgrades = 5,720 cr', 'All at High from the start: ...'."""
        first = (
            f"Draft first: {formatting.credits(self.drafts)} drafts + "
            f"{formatting.credits(self.upgrades)} upgrades = {formatting.credits(self.draft_first)}"
        )
        verb = "saved" if self.saved >= 0 else "more"
        second = (
            f"All at {self.final_name} from the start: {formatting.credits(self.all_final)} "
            f"({formatting.credits(abs(self.saved))} {verb})"
        )
        return first, second


def draft_first_saving(card: pricing.RateCard, drafted: Sequence[Drafted]) -> DraftSaving:
    """The Draft renders already paid plus the approved shots' upgrades, against every drafted
    shot rendered at its final tier from the start (priced by the rate card, as the service charges)."""
    drafts = upgrades = all_final = 0
    tiers = set()
    for shot in drafted:
        final = card.price(shot.engine, shot.final_tier, shot.duration_s).credits
        drafts += shot.draft_cost
        all_final += final
        if shot.approved:
            upgrades += final
        tiers.add(shot.final_tier)
    name = card.tier(next(iter(tiers))).name if len(tiers) == 1 else "their final tiers"
    return DraftSaving(drafts, upgrades, all_final, name)


# ---------------------------------------------------------------------------------------- auto top-up


def auto_top_up_rows(setting: dict[str, Any] | None, packs: Sequence[dict[str, Any]] = ()) -> list[tuple[str, str]]:
    """What the preferences say of auto top-up, as (label, figure) rows: the same eight rows whatever
    its state (a dash where a figure does not apply), so nothing below them moves."""
    setting = setting or {}
    known = "enabled" in setting
    on = bool(setting.get("enabled"))
    pack_id = str(setting.get("pack_id") or "")
    pack = next((p for p in packs if p.get("id") == pack_id), None) if on else None
    who = setting.get("set_by")
    name = who.get("name") if isinstance(who, dict) else None
    dash = "—"
    return [
        ("Auto top-up", ("on" if on else "off") if known else "not known yet"),
        ("Below", formatting.credits(_int(setting, "below")) if on else dash),
        ("Buys", (formatting.credits(_int(pack, "credits")) if pack else pack_id) if on else dash),
        ("For", money(_int(pack, "price_cents")) if pack else dash),
        ("At most a period", money(_int(setting, "max_per_period_cents")) if on else dash),
        ("Spent this period", money(_int(setting, "spent_this_period_cents")) if known else dash),
        ("Set by", name or ("nobody yet" if known else dash)),
        ("On", formatting.short_date(setting.get("set_at")) if name else dash),
    ]


def money(cents: int) -> str:
    """95000 -> '$950.00'."""
    return f"${cents / 100:,.2f}"
