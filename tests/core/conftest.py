"""Shared by the core tests: `support` importable, a secret-looking key, and a drain helper."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


@pytest.fixture
def secret() -> str:
    """Looks like a real key, so a leak is easy to grep for."""
    return "act3_sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.fixture
def drain_until() -> Callable[..., float]:
    def drain_until(worker: Any, predicate: Callable[[], bool], timeout: float = 5.0) -> float:
        """Drain like Blender's timer would (every 10 ms) until `predicate()`; returns the seconds it took."""
        start = time.monotonic()
        while True:
            worker.drain()
            if predicate():
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                state = worker.state
                pytest.fail(f"not within {timeout} s; connection={state.connection!r} error={state.last_error!r}")
            time.sleep(0.01)

    return drain_until
