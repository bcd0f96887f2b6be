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
