"""`act3`: the organisation's ACT3 credits from a terminal or a render-farm script.

    ACT3_API_KEY=... act3 balance
    act3 --url http://127.0.0.1:8765/v1 history --limit 20 --tier high
    act3 estimate veo-3.1 standard 7.5 4       (one shot per duration)
    act3 buy pack-250k
    act3 usage --by tier --from 2026-11-01 --to 2026-12-01
    act3 forecast

The key comes from ACT3_API_KEY only (a command-line flag would show in `ps` and shell history);
the URL from --url, else ACT3_API_URL, else the local default. Exit status: 0 done, 1 the service
said no or could not be reached (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import formatting
from .client import Act3Error, Client, new_idempotency_key
from .keystore import ENV_KEY, ENV_URL, resolve
from .usage import GROUPINGS
from .vocabulary import Kind

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
    args = parser.parse_args(argv)

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
    if args.command == "usage":
        usage = client.usage(args.start, args.end, args.by, args.tier, args.engine, args.limit)
        return usage.to_json(), usage_table(usage)
    if args.command == "forecast":
        fc = client.forecast()
        return fc.to_json(), forecast_text(fc)
    if args.command == "estimate":
        shots = [
            {"name": f"shot{i + 1}", "engine": args.engine, "tier": args.tier, "duration_s": s}
            for i, s in enumerate(args.seconds)
        ]
        est = client.estimate(shots)
        lines = [
            f"{s.name:8} {s.duration_s:>3} s  {formatting.credits(s.credits)}"
            + (f"  blocked: {s.blocked_reason}" if s.blocked_reason else "")
            for s in est.shots
        ]
        lines.append(f"Total {formatting.credits(est.total)}; available {formatting.credits(est.available)}")
        if est.shortfall:
            lines.append(f"Short by {formatting.credits(est.shortfall)}")
        return est.to_json(), "\n".join(lines)
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


def usage_table(usage: Usage) -> str:
    """A table: key, credits, shots, seconds, and the total under a rule."""
    head = f"{usage.group_by.capitalize():24} {'Credits':>14} {'Shots':>7} {'Seconds':>9}"
    lines = [f"Usage {usage.start[:16].replace('T', ' ')} to {usage.end[:16].replace('T', ' ')} UTC", head]
    for g in usage.groups:
        key = g.key or "(none)"
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


if __name__ == "__main__":
    sys.exit(main())
