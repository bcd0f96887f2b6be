"""`act3`: the organisation's ACT3 credits from a terminal or a render-farm script.

    ACT3_API_KEY=... act3 balance
    act3 --url http://127.0.0.1:8765/v1 history --limit 20 --tier high
    act3 estimate veo-3.1 standard 7.5 4       (one shot per duration)
    act3 estimate --next-period veo-3.1 high 8 (against what the next refill leaves)
    act3 submit --next-period --name coverage veo-3.1 high 8 8
    act3 jobs --status scheduled
    act3 cancel 13
    act3 buy pack-250k
    act3 auto-top-up                           (show it)
    act3 auto-top-up --on --below 100000 --pack pack-250k --max-cents 95000   (the owner)

The key comes from ACT3_API_KEY only (a command-line flag would show in `ps` and shell history);
the URL from --url, else ACT3_API_URL, else the local default. Exit status: 0 done, 1 the service
said no or could not be reached (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import formatting
from .client import Act3Error, Client, new_idempotency_key
from .keystore import ENV_KEY, ENV_URL, resolve
from .vocabulary import Kind, Status

NEXT_PERIOD = "next_period"


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
    e.add_argument("--next-period", action="store_true", help="against what the next refill leaves available")
    s = sub.add_parser("submit", help="send shots to render (or defer them to the next period)")
    s.add_argument("engine")
    s.add_argument("tier")
    s.add_argument("seconds", type=float, nargs="+", help="one shot per duration")
    s.add_argument("--name", default="act3 batch")
    s.add_argument("--next-period", action="store_true", help="hold nothing now; the next refill starts it")
    j = sub.add_parser("jobs", help="jobs, newest first")
    j.add_argument("--status", choices=[s.value for s in Status])
    j.add_argument("--limit", type=int, default=20)
    c = sub.add_parser("cancel", help="cancel a job (a scheduled one too)")
    c.add_argument("job", type=int)
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
    args = parser.parse_args(argv)
    if args.command == "auto-top-up" and args.on and None in (args.below, args.pack, args.max_cents):
        parser.error("auto-top-up --on needs --below, --pack and --max-cents")

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
    print(json.dumps(out[0], indent=2) if args.json else out[1])
    return 0


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
            f"{r.shot or '':12}  {r.engine or '':14}  {r.tier or '':8}  {r.member or ''}"
            for r in page.rows
        ]
        if page.next_cursor:
            rows.append(f"more: act3 history --cursor {page.next_cursor}")
        body: dict[str, Any] = {"items": [r.to_json() for r in page.rows], "next_cursor": page.next_cursor}
        return body, "\n".join(rows) or "No transactions."
    if args.command == "estimate":
        est = client.estimate(_shots(args), when=NEXT_PERIOD if args.next_period else None)
        lines = [
            f"{s.name:8} {s.duration_s:>3} s  {formatting.credits(s.credits)}"
            + (f"  blocked: {s.blocked_reason}" if s.blocked_reason else "")
            for s in est.shots
        ]
        when = f"after the refill on {est.next_period['starts_on']}" if est.next_period else "now"
        lines.append(f"Total {formatting.credits(est.total)}; available {when} {formatting.credits(est.available)}")
        if est.shortfall:
            lines.append(f"Short by {formatting.credits(est.shortfall)}")
        return est.to_json(), "\n".join(lines)
    if args.command == "submit":
        start = NEXT_PERIOD if args.next_period else None
        job = client.submit_job(args.name, _shots(args), new_idempotency_key(), start=start)
        return job.to_json(), _job_line(job.to_json())
    if args.command == "jobs":
        found = [j.to_json() for j in client.jobs(status=args.status, limit=args.limit)]
        return {"jobs": found}, "\n".join(_job_line(j) for j in found) or "No jobs."
    if args.command == "cancel":
        job = client.cancel_job(args.job)
        return job.to_json(), _job_line(job.to_json())
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
    raise AssertionError(args.command)


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
        f"job {job.get('id')}  {job.get('status', ''):10} {job.get('name', '')}: "
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
