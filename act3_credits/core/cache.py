"""The last known credits, first history page, rate card and account summary, kept on disk.

So Blender shows a (stale-marked) balance at start-up and offline. One JSON file in the directory
the caller gives (Blender's `extension_path_user`), replaced atomically, mode 0600. It never holds
the API key: only what `GET /v1/me`, `/account/credits`, `/account/credits/history` and
`/pricing` answered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .client import public_url
from .contract import Me
from .logs import log
from .pricing import RateCard
from .state import Credits, HistoryRow, State

FILE_NAME = "act3_cache.json"
FORMAT = 1
HISTORY_ROWS = 50


class Snapshot:
    """What the cache file holds (a plain class: no dataclass work when the add-on is enabled)."""

    def __init__(
        self,
        base_url: str = "",
        saved_at: str = "",
        credits: Credits | None = None,
        history: list[HistoryRow] | None = None,
        history_next_cursor: str | None = None,
        rate_card: dict[str, Any] | None = None,
        pricing_etag: str | None = None,
        me: Me | None = None,  # who and what this key may do (never the key itself)
    ) -> None:
        self.base_url, self.saved_at = base_url, saved_at
        self.credits, self.history, self.history_next_cursor = credits, history or [], history_next_cursor
        self.rate_card, self.pricing_etag, self.me = rate_card, pricing_etag, me

    @classmethod
    def from_state(cls, state: State, base_url: str, previous: Snapshot | None = None) -> Snapshot:
        snap = cls(base_url=base_url, saved_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        snap.credits = state.credits
        h = state.history
        if h.loaded_once and not h.tier and not h.shot:
            snap.history = h.rows[:HISTORY_ROWS]
            snap.history_next_cursor = h.next_cursor if len(h.rows) <= HISTORY_ROWS else None
        elif previous is not None and previous.base_url == base_url:
            # A filtered list is not "the history": keep the unfiltered page saved before.
            snap.history, snap.history_next_cursor = previous.history, previous.history_next_cursor
        if state.rate_card is not None:
            snap.rate_card = state.rate_card.to_json()
            snap.pricing_etag = state.pricing_etag
        snap.me = state.me
        return snap

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "base_url": self.base_url,
            "saved_at": self.saved_at,
            "credits": self.credits.to_json() if self.credits else None,
            "history": [r.to_json() for r in self.history],
            "history_next_cursor": self.history_next_cursor,
            "rate_card": self.rate_card,
            "pricing_etag": self.pricing_etag,
            "me": self.me.to_json() if self.me is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        if data.get("format") != FORMAT:
            raise ValueError("unknown cache format")
        credits = data.get("credits")
        me = data.get("me")
        card = data.get("rate_card")
        if card is not None:
            RateCard.from_json(card)  # refuse a card that would not parse later
        return cls(
            base_url=str(data.get("base_url") or ""),
            saved_at=str(data.get("saved_at") or ""),
            credits=Credits.from_json(credits) if isinstance(credits, dict) else None,
            history=[HistoryRow.from_json(r) for r in data.get("history") or []],
            history_next_cursor=data.get("history_next_cursor"),
            rate_card=card,
            pricing_etag=data.get("pricing_etag"),
            me=Me.from_json(me) if me is not None else None,
        )

    def apply_to(self, state: State) -> None:
        """Show the saved numbers, marked as not confirmed by the service (stale)."""
        if self.credits is not None:
            state.set_credits(self.credits, from_cache=True)
        if self.history and not state.history.loaded_once:
            state.history.rows = list(self.history)
            state.history.next_cursor = self.history_next_cursor
        if self.rate_card is not None and state.rate_card is None:
            state.rate_card = RateCard.from_json(self.rate_card)
            state.pricing_etag = self.pricing_etag
        if self.me is not None and state.me is None:
            state.me = self.me
            state.allowed_tiers = self.me.allowed_tiers
            state.payment_method = self.me.payment_method
        state.touch()


class Cache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.last: Snapshot | None = None

    def load(self, base_url: str | None = None) -> Snapshot | None:
        """The saved snapshot, or None when there is none, it is unreadable, or it is for another URL."""
        try:
            snap = Snapshot.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged cache is dropped, never a start-up failure
            log.warning("ignoring the ACT3 cache %s: %s", self.path.name, exc)
            return None
        wanted = None if base_url is None else public_url(base_url)
        if wanted is not None and snap.base_url and snap.base_url.rstrip("/") != wanted.rstrip("/"):
            return None
        self.last = snap
        return snap

    def save(self, state: State, base_url: str = "") -> None:
        # The file never holds a user:password the URL may carry (it may be a key).
        snap = Snapshot.from_state(state, public_url(base_url), self.last)
        write_private(self.path, json.dumps(snap.to_json(), indent=1, sort_keys=True))
        self.last = snap

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.last = None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temp file + os.replace), readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
