"""`GET /v1/account/usage` as typed values (the client returns these; scripts and the CLI read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUPINGS = ("day", "week", "tier", "engine", "shot", "member", "job", "project")


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"usage.{name} is not an integer")
    return v


@dataclass(frozen=True)
class UsageGroup:
    """Charged renders of one group: `credits` positive, `seconds` their billed durations."""

    key: str
    credits: int
    shots: int
    seconds: int

    @classmethod
    def from_json(cls, d: Any) -> UsageGroup:
        if not isinstance(d, dict):
            raise TypeError("a usage group is not an object")
        return cls(
            str(d.get("key", "")), _int(d.get("credits"), "credits"), _int(d.get("shots"), "shots"),
            _int(d.get("seconds"), "seconds"),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "credits": self.credits, "shots": self.shots, "seconds": self.seconds}


@dataclass(frozen=True)
class Usage:
    """Usage over [start, end) (ISO 8601 UTC), grouped by `group_by`; `total` covers every group."""

    start: str
    end: str
    group_by: str
    groups: tuple[UsageGroup, ...]
    total: UsageGroup  # key ""

    @classmethod
    def from_json(cls, d: Any) -> Usage:
        if not isinstance(d, dict) or not isinstance(d.get("groups"), list):
            raise TypeError("usage is not an object with groups")
        return cls(
            start=str(d.get("from", "")),
            end=str(d.get("to", "")),
            group_by=str(d.get("group_by", "")),
            groups=tuple(UsageGroup.from_json(g) for g in d["groups"]),
            total=UsageGroup.from_json({"key": "", **(d.get("total") or {})}),
        )

    def to_json(self) -> dict[str, Any]:
        total = self.total.to_json()
        del total["key"]
        return {
            "from": self.start,
            "to": self.end,
            "group_by": self.group_by,
            "groups": [g.to_json() for g in self.groups],
            "total": total,
        }


def keep_rows(shown: Usage | None, latest: Usage, limit: int) -> Usage:
    """`latest`, its groups in the order `shown` lists them: what a list the artist may be about to
    click shows while a batch renders, so no row moves under the pointer.

    Each row already shown stays where it is with its latest figures (one that `latest` no longer
    lists, pushed out by others, keeps its last ones); keys new to the list follow in `latest`'s
    order while there is room for `limit` rows. A different range or grouping is not the same list:
    `latest` as it is."""
    if shown is None or (shown.start, shown.end, shown.group_by) != (latest.start, latest.end, latest.group_by):
        return latest
    fresh = {g.key: g for g in latest.groups}
    rows = [fresh.pop(g.key, g) for g in shown.groups]
    rows += [g for g in latest.groups if g.key in fresh][: max(0, limit - len(rows))]
    return Usage(latest.start, latest.end, latest.group_by, tuple(rows), latest.total)
