"""The add-on's logger (`act3_credits`), without importing `logging` when Blender enables the add-on.

`logging` and what it imports cost about 4 ms of the enable's 50 ms budget, and nothing is logged
at enable: `log` imports it on its first use and hands every call to the real logger, so handlers,
levels and pytest's caplog see the same records.
"""

from __future__ import annotations

from typing import Any

NAME = "act3_credits"


class _Log:
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger(NAME), name)


log: Any = _Log()
