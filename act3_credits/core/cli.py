"""`act3`: the organisation's ACT3 credits from a terminal or a render-farm script.

    ACT3_API_KEY=... act3 balance
    act3 --url http://127.0.0.1:8765/v1 history --limit 20 --tier high
    act3 estimate veo-3.1 standard 7.5 4       (one shot per duration)
    act3 estimate --next-period veo-3.1 high 8 (against what the next refill leaves)
    act3 submit --next-period --name coverage veo-3.1 high 8 8
    act3 jobs --status scheduled
    act3 cancel 13
    act3 buy pack-250k
    act3 usage --by tier --from 2026-11-01 --to 2026-12-01
    act3 forecast
    act3 budgets                                (project budgets: spent, held, left)
    act3 budget set spot-2027 500000 --action pause [--period total]
    act3 budget delete spot-2027
    act3 members                                (ids, roles and caps)
    act3 cap 7 100000                           (member 7's cap a billing period; `none` removes it)
    act3 auto-top-up                           (show it)
    act3 auto-top-up --on --below 100000 --pack pack-250k --max-cents 95000   (the owner)

The key comes from ACT3_API_KEY only (a command-line flag would show in `ps` and shell history);
the URL from --url, else ACT3_API_URL, else the local default. Exit status: 0 done, 1 the service
said no or could not be reached (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import formatting
from .client import Act3Error, Client, new_idempotency_key
from .keystore import ENV_KEY, ENV_URL, resolve
from .usage import GROUPINGS
from .vocabulary import BudgetAction, BudgetPeriod, Kind, Status

NEXT_PERIOD = "next_period"

if TYPE_CHECKING:
    from .forecast import Forecast
    from .usage import Usage


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="act3", description="ACT3 AI credits of your organisation.")
    parser.add_argument("--url", default="", help=f"API base URL including /v1 (default: ${ENV_URL} or local)")
    parser.add_argument("--json", action="store_true", help="print the service's JSON instead of text")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("balance", help="available credits, held, monthly and rollover")
    h = sub.add_parser("history", help="transaction history, newest first")
    h.add_argument("--limit", type=int, default=20)
    h.add_argument("--tier")
    h.add_argument("--shot", help="part of a shot name")
    h.add_argument("--kind", choices=[k.value for k in Kind])
    h.add_argument("--cursor")
    e = sub.add_parser("estimate", help="what shots would cost")
    e.add_argument("engine")
    e.add_argument("tier")
    e.add_argument("seconds", type=float, nargs="+", help="one shot per duration")
    e.add_argument("--project", help="also say what this project's budget and your cap would do")
    e.add_argument("--next-period", action="store_true", help="against what the next refill leaves available")
    s = sub.add_parser("submit", help="send shots to render (or defer them to the next period)")
    s.add_argument("engine")
    s.add_argument("tier")
    s.add_argument("seconds", type=float, nargs="+", help="one shot per duration")
    s.add_argument("--name", default="act3 batch")
    s.add_argument("--next-period", action="store_true", help="hold nothing now; the next refill starts it")
    s.add_argument("--project", help="the project whose budget the job counts against")
    j = sub.add_parser("jobs", help="jobs, newest first")
    j.add_argument("--status", choices=[s.value for s in Status])
    j.add_argument("--limit", type=int, default=20)
    c = sub.add_parser("cancel", help="cancel a job (a scheduled one too)")
    c.add_argument("job", type=int)
    u = sub.add_parser("usage", help="what renders cost, grouped (default: this billing period, by day)")
    u.add_argument("--from", dest="start", help="ISO date or time, inclusive (UTC)")
    u.add_argument("--to", dest="end", help="ISO date or time, exclusive (UTC)")
    u.add_argument("--by", default="day", choices=GROUPINGS, help="grouping (default: day)")
    u.add_argument("--tier")
    u.add_argument("--engine")
    u.add_argument("--limit", type=int, default=50, help="groups other than day and week (default 50)")
    sub.add_parser("forecast", help="how long the credits last at the recent pace")
    sub.add_parser("packs", help="credit packs on sale")
    b = sub.add_parser("buy", help="buy a credit pack with the card on file (owner or admin)")
    b.add_argument("pack")
    a = sub.add_parser("auto-top-up", help="show auto top-up, or set it (the owner)")
    on_off = a.add_mutually_exclusive_group()
    on_off.add_argument("--on", action="store_true", help="turn it on (needs --below, --pack, --max-cents)")
    on_off.add_argument("--off", action="store_true", help="turn it off (keeps the other settings)")
    a.add_argument("--below", type=int, help="buy when available credits fall under this")
    a.add_argument("--pack", help="the pack to buy, e.g. pack-250k")
    a.add_argument("--max-cents", type=int, help="at most this much a billing period, in cents")
    sub.add_parser("budgets", help="project budgets: spent, held and left")
    bud = sub.add_parser("budget", help="set or remove a project budget (owner or admin)")
    bud_sub = bud.add_subparsers(dest="budget_command", required=True)
    bs = bud_sub.add_parser("set", help="set or replace a project's budget")
    bs.add_argument("project")
    bs.add_argument("credits", type=int)
    bs.add_argument("--period", choices=[p.value for p in BudgetPeriod], default=BudgetPeriod.BILLING_PERIOD.value)
    bs.add_argument("--action", choices=[a.value for a in BudgetAction], default=BudgetAction.REFUSE.value)
    bd = bud_sub.add_parser("delete", help="remove a project's budget")
    bd.add_argument("project")
    sub.add_parser("members", help="the organisation's members, their ids and caps")
    c = sub.add_parser("cap", help="cap a member's credits a billing period (owner or admin)")
    c.add_argument("member_id", type=int)
    c.add_argument("credits", help="credits a billing period, or `none` to remove the cap")
    args = parser.parse_args(argv)
    if args.command == "cap" and args.credits != "none" and not (args.credits.isascii() and args.credits.isdigit()):
        parser.error("cap: credits must be a whole number or `none`")
    if args.command == "auto-top-up" and args.on and None in (args.below, args.pack, args.max_cents):
        parser.error("auto-top-up --on needs --below, --pack and --max-cents")
    if args.command == "auto-top-up" and not (args.on or args.off) and (args.below, args.pack, args.max_cents) != (
        None, None, None
    ):
        parser.error("auto-top-up: --below, --pack and --max-cents go with --on (or --off)")

    # --url wins over the environment here: it was typed for this very call.
    url, key, _ = resolve("", "", None)
    url = args.url or url
    if not key:
        print(f"act3: set {ENV_KEY} to your ACT3 API key.", file=sys.stderr)
        return 2
    try:
        with Client(url, key) as client:
            out = _run(client, args)
    except Act3Error as err:
        print(f"act3: {err}", file=sys.stderr)
        return 1
    return _print(json.dumps(out[0], indent=2) if args.json else out[1])


def _print(text: str) -> int:
    """Print what the service answered; 0 either way: what was asked was done. A reader that went
    away (`| head -1`) is not an error; an output that cannot be written (a full disk) is said."""
    try:
        print(text)
        sys.stdout.flush()
    except OSError as err:
        if not isinstance(err, BrokenPipeError):
            print(f"act3: done, but its answer could not be written: {err.strerror or err}", file=sys.stderr)
        # Python flushes stdout again at exit: point it where that cannot fail.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _p(value: object) -> str:
    return formatting.printable(value or "")


def _run(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    """(JSON, text) for the command."""
    if args.command == "balance":
        c = client.credits()
        lines = [
            f"Available   {formatting.credits(c.available)}",
            f"Held        {formatting.credits(c.held)}",
            f"Monthly     {formatting.credits(c.monthly_remaining)} of {formatting.credits(c.monthly_allocation)}",
            f"Rollover    {formatting.credits(c.rollover_bank)} (cap {formatting.credits(c.rollover_cap)})",
            f"Refill on   {c.billing_date}",
        ]
        return c.to_json(), "\n".join(lines)
    if args.command == "history":
        page = client.history(limit=args.limit, cursor=args.cursor, tier=args.tier, shot=args.shot, kind=args.kind)
        rows = [
            f"{formatting.day(r.at):16}  {r.kind:8}  {formatting.signed_credits(r.credits):>10}  "
            f"{_p(r.shot):12}  {_p(r.engine):14}  {_p(r.tier):8}  {_p(r.member)}"
            for r in page.rows
        ]
        if page.next_cursor:
            rows.append(f"more: act3 history --cursor {page.next_cursor}")
        body: dict[str, Any] = {"items": [r.to_json() for r in page.rows], "next_cursor": page.next_cursor}
        return body, "\n".join(rows) or "No transactions."
    if args.command == "usage":
        usage = client.usage(args.start, args.end, args.by, args.tier, args.engine, args.limit)
        return usage.to_json(), usage_table(usage)
    if args.command == "forecast":
        fc = client.forecast()
        return fc.to_json(), forecast_text(fc)
    if args.command == "estimate":
        est = client.estimate(_shots(args), args.project, when=NEXT_PERIOD if args.next_period else None)
        lines = [
            f"{s.name:8} {s.duration_s:>3} s  {formatting.credits(s.credits)}"
            + (f"  blocked: {s.blocked_reason}" if s.blocked_reason else "")
            for s in est.shots
        ]
        when = f"after the refill on {est.next_period['starts_on']}" if est.next_period else "now"
        lines.append(f"Total {formatting.credits(est.total)}; available {when} {formatting.credits(est.available)}")
        if est.shortfall:
            lines.append(f"Short by {formatting.credits(est.shortfall)}")
        for limit in (est.member_cap, est.budget):
            if limit and limit.get("message"):
                lines.append(f"{str(limit['verdict']).capitalize()}: {limit['message']}")
        return est.to_json(), "\n".join(lines)
    if args.command == "submit":
        start = NEXT_PERIOD if args.next_period else None
        job = client.submit_job(args.name, _shots(args), new_idempotency_key(), args.project, start=start).to_json()
        return job, _job_line(job)
    if args.command == "jobs":
        found = [j.to_json() for j in client.jobs(status=args.status, limit=args.limit)]
        return {"jobs": found}, "\n".join(_job_line(j) for j in found) or "No jobs."
    if args.command == "cancel":
        job = client.cancel_job(args.job).to_json()
        return job, _job_line(job)
    if args.command == "auto-top-up":
        now = client.auto_top_up()
        if args.on or (args.off and now.get("below") is not None):  # never set: nothing to turn off
            setting = client.set_auto_top_up(
                enabled=bool(args.on),
                below=args.below if args.below is not None else int(now.get("below") or 0),
                pack_id=args.pack or now.get("pack_id") or "",
                max_per_period_cents=args.max_cents
                if args.max_cents is not None
                else int(now.get("max_per_period_cents") or 0),
            )
        else:
            setting = now
        return setting, _auto_top_up_text(setting)
    if args.command == "packs":
        data = client.credit_packs()
        lines = [f"{p['id']:12} {formatting.credits(p['credits']):>14}  {p.get('price', '')}" for p in data["packs"]]
        lines.append(f"Charged to {formatting.payment_method(data.get('payment_method'))}")
        return data, "\n".join(lines)
    if args.command == "buy":
        result = client.purchase(args.pack, new_idempotency_key())
        text = (
            f"Bought {formatting.credits(result.purchase.get('credits'))} "
            f"({formatting.payment_method(result.purchase.get('payment_method'))}); "
            f"{formatting.credits(result.balance.available)} available."
        )
        return {"purchase": result.purchase, "balance": result.balance.to_json()}, text
    if args.command == "budgets":
        budgets = client.budgets()
        return {"budgets": budgets}, "\n".join(_budget_line(b) for b in budgets) or "No project budgets."
    if args.command == "budget" and args.budget_command == "set":
        b = client.set_budget(args.project, args.credits, args.period, args.action)
        return b, _budget_line(b)
    if args.command == "budget":
        client.delete_budget(args.project)
        return {"deleted": args.project}, f"Removed the budget of {_p(args.project)}."
    if args.command == "members":
        people = client.members()
        return {"members": people}, "\n".join(_member_line(m) for m in people)
    if args.command == "cap":
        m = client.set_member_cap(args.member_id, None if args.credits == "none" else int(args.credits))
        return m, _member_line(m)
    raise AssertionError(args.command)


def usage_table(usage: Usage) -> str:
    """A table: key, credits, shots, seconds, and the total under a rule."""
    head = f"{usage.group_by.capitalize():24} {'Credits':>14} {'Shots':>7} {'Seconds':>9}"
    lines = [f"Usage {usage.start[:16].replace('T', ' ')} to {usage.end[:16].replace('T', ' ')} UTC", head]
    for g in usage.groups:
        key = _p(g.key) or "(none)"
        lines.append(f"{key[:24]:24} {formatting.credits(g.credits, unit=False):>14} {g.shots:>7,} {g.seconds:>9,}")
    t = usage.total
    lines.append("-" * len(head))
    lines.append(f"{'Total':24} {formatting.credits(t.credits, unit=False):>14} {t.shots:>7,} {t.seconds:>9,}")
    return "\n".join(lines)


def forecast_text(fc: Forecast) -> str:
    """The runway in words, then what the next refill will do at this pace."""
    refill = fc.next_refill_at.strftime("%d %b %Y").lstrip("0")
    pace = fc.pace_7d or fc.pace_30d
    which = "this week's" if fc.pace_7d else "this month's"
    if fc.runs_out_at is None:
        runway = (
            "No renders charged in 30 days: no pace to forecast."
            if not pace
            else f"Lasts beyond a year at {which} pace ({formatting.credits(pace)}/day)."
        )
    else:
        out = fc.runs_out_at.strftime("%d %b %Y %H:%M").lstrip("0")
        before = " (before the next refill)" if fc.runs_out_at < fc.next_refill_at else ""
        runway = (
            f"≈ {fc.days_left:g} days at {which} pace ({formatting.credits(pace)}/day): runs out {out} UTC{before}."
        )
    return "\n".join(
        [
            runway,
            f"Available   {formatting.credits(fc.available)}"
            + (f" ({formatting.credits(fc.held)} held)" if fc.held else ""),
            f"Pace        {formatting.credits(fc.pace_7d)}/day (7 days), {formatting.credits(fc.pace_30d)}/day (30 days)",
            f"Refill on   {refill}: {formatting.credits(fc.monthly_left_at_refill)} monthly left, "
            f"{formatting.credits(fc.will_roll_over)} roll over, {formatting.credits(fc.will_expire)} lapse",
        ]
    )


def _budget_line(b: dict[str, Any]) -> str:
    per = "a period" if b["period"] == BudgetPeriod.BILLING_PERIOD else "in total"
    return (
        f"{_p(b['project']):20} {formatting.credits(b['credits']):>14} {per:9} {b['action']:7}"
        f"  spent {formatting.credits(b['spent'])}, held {formatting.credits(b['held'])},"
        f" left {formatting.credits(b['left'])}"
    )


def _member_line(m: dict[str, Any]) -> str:
    cap = m.get("cap")
    limit = (
        f"cap {formatting.credits(cap['credits_per_period'])}, left {formatting.credits(cap['left'])}"
        if cap
        else "no cap"
    )
    return f"{m['id']:>5}  {_p(m['name']):24} {m['role']:7} {limit}"


def _shots(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        {"name": f"shot{i + 1}", "engine": args.engine, "tier": args.tier, "duration_s": s}
        for i, s in enumerate(args.seconds)
    ]


def _job_line(job: dict[str, Any]) -> str:
    held = (
        f"{formatting.credits(job.get('held'))} held" if job.get("status") != Status.SCHEDULED else "holds nothing yet"
    )
    return (
        f"job {job.get('id')}  {job.get('status', ''):10} {_p(job.get('name', ''))}: "
        f"{formatting.credits(job.get('estimated_credits'))} estimated, {held}"
    )


def _auto_top_up_text(s: dict[str, Any]) -> str:
    spent = f"${int(s.get('spent_this_period_cents') or 0) / 100:,.2f} spent this period"
    if s.get("below") is None:
        return f"Auto top-up is off (never set). {spent}."
    state = "on" if s.get("enabled") else "off"
    who = (s.get("set_by") or {}).get("name") or "?"
    return (
        f"Auto top-up is {state}: buy {s.get('pack_id')} when available falls under "
        f"{formatting.credits(s.get('below'))}, at most ${int(s.get('max_per_period_cents') or 0) / 100:,.2f} "
        f"a period; {spent}. Set by {who} at {s.get('set_at')}."
    )


if __name__ == "__main__":
    sys.exit(main())
