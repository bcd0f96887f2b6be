"""The published rate card written out by hand, to check `act3_credits.core.pricing` against.

Nothing here imports the product: a test that computes its expected credits with `pricing` compares
pricing with itself and passes whatever the formula does. These are the numbers an artist reads on
the price list:

| engine       | cr per second (Standard) | durations           |
| ------------ | ------------------------ | ------------------- |
| veo-3.1      | 260                      | 4, 6, 8 s           |
| veo-3.1-fast | 98                       | 4, 6, 8 s           |
| seedance-2.0 | 245                      | any whole second 4-15 |
| wan-2.6      | 98                       | 5, 10, 15 s         |
| grok-imagine | 46                       | any whole second 1-15 |

Tiers: Draft 1/2, Standard 1, High 2, 4K 4. A request snaps to the nearest allowed duration (a tie
goes to the longer one); the cost is ceil(rate x multiplier x snapped seconds).
"""

from __future__ import annotations

from fractions import Fraction

RATE = {"veo-3.1": 260, "veo-3.1-fast": 98, "seedance-2.0": 245, "wan-2.6": 98, "grok-imagine": 46}
DURATIONS = {
    "veo-3.1": (4, 6, 8),
    "veo-3.1-fast": (4, 6, 8),
    "seedance-2.0": tuple(range(4, 16)),
    "wan-2.6": (5, 10, 15),
    "grok-imagine": tuple(range(1, 16)),
}
MULTIPLIER = {"draft": Fraction(1, 2), "standard": Fraction(1), "high": Fraction(2), "4k": Fraction(4)}
ENGINES = tuple(RATE)
TIERS = tuple(MULTIPLIER)

# Standard-tier credits of every allowed duration, typed out (rate x seconds).
STANDARD = {
    "veo-3.1": {4: 1_040, 6: 1_560, 8: 2_080},
    "veo-3.1-fast": {4: 392, 6: 588, 8: 784},
    "seedance-2.0": {
        4: 980,
        5: 1_225,
        6: 1_470,
        7: 1_715,
        8: 1_960,
        9: 2_205,
        10: 2_450,
        11: 2_695,
        12: 2_940,
        13: 3_185,
        14: 3_430,
        15: 3_675,
    },  # fmt: skip
    "wan-2.6": {5: 490, 10: 980, 15: 1_470},
    "grok-imagine": {
        1: 46,
        2: 92,
        3: 138,
        4: 184,
        5: 230,
        6: 276,
        7: 322,
        8: 368,
        9: 414,
        10: 460,
        11: 506,
        12: 552,
        13: 598,
        14: 644,
        15: 690,
    },  # fmt: skip
}


def snap(engine: str, requested_s: float) -> int:
    """The nearest allowed duration; on a tie, the longer."""
    want = Fraction(requested_s).limit_denominator(1_000_000)
    return min(DURATIONS[engine], key=lambda d: (abs(d - want), -d))


def cost(engine: str, tier: str, snapped_s: int) -> int:
    """ceil(rate x multiplier x seconds), in integers."""
    exact = RATE[engine] * MULTIPLIER[tier] * snapped_s
    return -(-exact.numerator // exact.denominator)


def price(engine: str, tier: str, requested_s: float) -> tuple[int, int]:
    """(snapped seconds, credits) for one shot."""
    snapped = snap(engine, requested_s)
    return snapped, cost(engine, tier, snapped)


def credits(spec: dict) -> int:
    """The credits of a shot spec {"engine", "tier", "duration_s", ...}."""
    return price(spec["engine"], spec["tier"], spec["duration_s"])[1]
