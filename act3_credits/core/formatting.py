"""How credits, dates and money read, everywhere in the add-on (one place for each rule)."""

from __future__ import annotations

import datetime as dt


def credits(value: int | None, unit: bool = True) -> str:
    """245000 -> '245,000 cr'."""
    if value is None:
        return "— cr" if unit else "—"
    text = f"{int(value):,}"
    return f"{text} cr" if unit else text


def one_line(text: object, most: int | None = 80) -> str:
    """A name or a message as a report shows it: white space (line breaks, tabs) folded to single
    spaces, at most `most` characters ('…' where it was cut; None: however long)."""
    folded = " ".join(str(text).split())
    return folded if most is None or len(folded) <= most else folded[: most - 1] + "…"


def printable(text: object) -> str:
    """A name for a terminal: control characters (ESC, CR, LF, C1...) written as \\x1b escapes,
    so another member's job or shot name cannot move the cursor or fake a line."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
                   for ch in str(text))  # fmt: skip


def signed_credits(value: int) -> str:
    return f"{'+' if value > 0 else '−' if value < 0 else ''}{abs(int(value)):,}"


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def clock(when: dt.datetime | None) -> str:
    """A UTC time as the artist's local wall clock, 'HH:MM'."""
    if when is None:
        return "never"
    return when.astimezone().strftime("%H:%M")


def day(text: str | None) -> str:
    when = parse_time(text)
    return when.astimezone().strftime("%Y-%m-%d %H:%M") if when else ""


def short_date(text: str | None) -> str:
    """'25 Nov' in the artist's local time: a narrow list column (the row's tooltip has the time)."""
    when = parse_time(text)
    return when.astimezone().strftime("%d %b") if when else ""


def day_month(date_text: str | None) -> str:
    """'1 Dec' for a billing date ('2026-12-01'): the date itself, no time zone to convert."""
    if not date_text:
        return ""
    try:
        date = dt.date.fromisoformat(date_text[:10])
    except ValueError:
        return date_text
    return f"{date.day} {date.strftime('%b')}"


def days_until(date_text: str | None, today: dt.date | None = None) -> int | None:
    if not date_text:
        return None
    try:
        target = dt.date.fromisoformat(date_text[:10])
    except ValueError:
        return None
    today = today or dt.datetime.now(dt.UTC).date()
    return (target - today).days


def payment_method(pm: dict | None) -> str:
    if not pm:
        return "No payment method on file"
    return f"{pm.get('brand', 'Card')} •••• {pm.get('last4', '????')}"
