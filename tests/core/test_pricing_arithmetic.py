"""Every price is the one the exact-fraction formula gives: the snap without fractions and the
integer cost change no number, for any engine, tier or duration (pure Python).

`reference_snap` and `reference_price` are the algorithm the card used before (every allowed
duration compared in `Fraction`s, the cost as `ceil` of a `Fraction`), kept here as the oracle.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import prices

from act3_credits.core import pricing, shots
from act3_credits.core.pricing import DEFAULT_RATE_CARD as CARD
from act3_credits.core.pricing import Engine, PricingError, RateCard, Tier
from act3_credits.core.shots import Account, Shot

# ------------------------------------------------------------------ the old algorithm, as the oracle


def reference_snap(engine: Engine, requested_s: float) -> int:
    pricing.validate_duration(requested_s)
    want = Fraction(requested_s).limit_denominator(1_000_000)
    best = None
    for d in engine.allowed_durations():
        key = (abs(Fraction(d) - want), -d)
        if best is None or key < best[0]:
            best = (key, d)
    assert best is not None
    return best[1]


def reference_price(card: RateCard, engine_id: str, tier_id: str, requested_s: float) -> tuple[int, int]:
    engine = card.engine(engine_id)
    tier = card.tier(tier_id)
    snapped = reference_snap(engine, requested_s)
    return snapped, int(math.ceil(engine.rate_per_second * tier.multiplier * snapped))


def reference_estimate(batch, card, account, included=None):
    """The Cost Estimate as it was computed before: one `card.price` per shot and per Draft."""
    refusal = shots.role_refusal(account.role)
    lines = []
    for k, shot in enumerate(batch):
        inc = True if included is None else bool(included[k])
        reason = code = snapped = None
        credits = draft = 0
        try:
            snapped, credits = reference_price(card, shot.engine, shot.tier, shot.duration_s)
            draft = reference_price(card, shot.engine, shots.DRAFT_TIER, shot.duration_s)[1]
        except PricingError as exc:
            reason, code = exc.message, exc.code
        if reason is None and shot.locked:
            reason, code = shots.locked_refusal(shot.name), "locked"
        if reason is None:
            tier_reason = shots.tier_refusal_text(card, shot.tier, account)
            if tier_reason:
                reason, code = tier_reason, "tier_not_allowed"
        if reason is None and refusal:
            reason, code = refusal, "forbidden"
        lines.append(shots.Line(shot, snapped, credits, draft, reason, code, inc))
    return shots.Estimate(tuple(lines), account.available, card.version, refusal)


# ------------------------------------------------------------------ worked by hand


def seconds(frames: int, fps: float, fps_base: float = 1.0) -> float:
    return shots.duration_s(1, frames, fps, fps_base)


@pytest.mark.parametrize(
    ("engine", "tier", "requested_s", "snapped", "credits"),
    [
        ("veo-3.1", "standard", 7.5, 8, 2_080),  # tie between 6 and 8: the longer; 260 x 8
        ("veo-3.1", "draft", 7.5, 8, 1_040),  # 260 x 1/2 x 8
        ("veo-3.1", "high", 5.0, 6, 3_120),  # tie 4/6 -> 6; 260 x 2 x 6
        ("veo-3.1", "4k", 8.0, 8, 8_320),
        ("veo-3.1", "standard", seconds(150, 30, 1.001), 6, 1_560),  # 5.005 s at 29.97 fps
        ("veo-3.1", "standard", seconds(149, 30, 1.001), 4, 1_040),  # 4.971633 s
        ("veo-3.1", "draft", seconds(125, 25), 6, 780),  # exactly 5 s: tie -> 6
        ("veo-3.1-fast", "draft", 6.99, 6, 294),  # 98 x 1/2 x 6
        ("seedance-2.0", "draft", 4.5, 5, 613),  # 245 x 1/2 x 5 = 612.5, rounded up
        ("seedance-2.0", "draft", seconds(135, 30, 1.001), 5, 613),  # 4.5045 s
        ("seedance-2.0", "draft", 4.4999999, 5, 613),  # within 2.5e-7 of 4.5: the fraction is 9/2, a tie
        ("seedance-2.0", "draft", 4.5000001, 5, 613),
        ("seedance-2.0", "draft", 4.499999, 4, 490),  # 4499999/1000000 is below 4.5
        ("seedance-2.0", "draft", seconds(300, 30, 1.001), 10, 1_225),  # 10.01 s
        ("seedance-2.0", "standard", 0.1, 4, 980),  # shorter than the minimum
        ("seedance-2.0", "standard", 600, 15, 3_675),  # the longest request, an int
        ("wan-2.6", "standard", 7.5, 10, 980),  # tie 5/10 -> 10
        ("wan-2.6", "standard", 12.4999996, 10, 980),  # 499999/999999 is nearer than 1/2: below the tie
        ("wan-2.6", "standard", 12.4999998, 15, 1_470),  # 1/2 is the nearest fraction: a tie -> 15
        ("wan-2.6", "draft", 12.5, 15, 735),
        ("grok-imagine", "draft", seconds(45, 30, 1.001), 2, 46),  # 1.5015 s
        ("grok-imagine", "standard", seconds(36, 24, 1.001), 2, 92),  # 1.5015 s at 23.976 fps
        ("grok-imagine", "standard", 1.5, 2, 92),
        ("grok-imagine", "4k", 0.0001, 1, 184),
    ],
)
def test_prices_worked_by_hand(engine, tier, requested_s, snapped, credits):
    price = CARD.price(engine, tier, requested_s)
    assert (price.duration_s, price.credits) == (snapped, credits)
    assert reference_price(CARD, engine, tier, requested_s) == (snapped, credits)


def test_the_default_card_is_the_published_price_list():
    assert [(e.id, e.rate_per_second, e.allowed_durations()) for e in CARD.engines] == [
        (engine, prices.RATE[engine], prices.DURATIONS[engine]) for engine in prices.ENGINES
    ]
    assert [(t.id, t.multiplier) for t in CARD.tiers] == list(prices.MULTIPLIER.items())
    for engine, table in prices.STANDARD.items():  # the typed-out table is rate x seconds
        assert table == {s: prices.RATE[engine] * s for s in prices.DURATIONS[engine]}


def test_every_engine_tier_and_duration_costs_what_the_price_list_says():
    checked = 0
    for engine, table in prices.STANDARD.items():
        for snapped, standard in table.items():
            assert CARD.price(engine, "standard", snapped).credits == standard
            assert CARD.price(engine, "draft", snapped).credits == (standard + 1) // 2  # half, rounded up
            assert CARD.price(engine, "high", snapped).credits == 2 * standard
            assert CARD.price(engine, "4k", snapped).credits == 4 * standard
            checked += 4
    assert checked == 4 * (3 + 3 + 12 + 3 + 15)


def test_requests_at_every_usual_frame_rate_snap_and_cost_as_the_price_list_says():
    for fps, fps_base in [(24, 1.001), (24, 1.0), (25, 1.0), (30, 1.001), (30, 1.0), (50, 1.0), (60, 1.001)]:
        for frames in range(1, int(16 * fps) + 1, 7):
            requested = seconds(frames, fps, fps_base)
            for engine in prices.ENGINES:
                for tier in prices.TIERS:
                    price = CARD.price(engine, tier, requested)
                    assert (price.duration_s, price.credits) == prices.price(engine, tier, requested), (
                        engine, tier, frames, fps, fps_base,
                    )  # fmt: skip


ODD_CARD = RateCard(
    engines=(
        Engine("list", "Unsorted list with a repeat", 245, durations=(8, 4, 4, 6)),
        Engine("one", "One duration", 97, durations=(5,)),
        Engine("fixed", "min = max", 31, min_s=3, max_s=3),
        Engine("wide", "Any second up to 600", 7, min_s=1, max_s=600),
        Engine("gaps", "Uneven gaps", 13, durations=(2, 3, 7, 20, 21)),
    ),
    tiers=(
        Tier("draft", "Draft", Fraction(1, 2)),
        Tier("third", "A third", Fraction(1, 3)),
        Tier("odd", "Seven fifths", Fraction(7, 5)),
        Tier("tiny", "A thousandth", Fraction(1, 1000)),
        Tier("standard", "Standard", Fraction(1)),
    ),
)


@pytest.mark.parametrize(
    ("engine", "tier", "requested_s", "snapped", "credits"),
    [
        ("list", "third", 4.0, 4, 327),  # 245 x 4 / 3 = 326.67
        ("list", "odd", 7.0, 8, 2_744),  # tie 6/8 -> 8; 245 x 7/5 x 8 = 2744 exactly
        ("one", "odd", 0.2, 5, 679),  # 97 x 7/5 x 5 = 679
        ("fixed", "tiny", 599.0, 3, 1),  # 31 x 3 / 1000 = 0.093, rounded up to 1
        ("wide", "third", 599.5, 600, 1_400),  # 7 x 600 / 3
        ("gaps", "odd", 13.5, 20, 364),  # tie 7/20 -> 20; 13 x 7/5 x 20
        ("gaps", "draft", 13.4999, 7, 46),  # 13 x 7 / 2 = 45.5
    ],
)
def test_odd_multipliers_and_duration_lists_round_up_as_fractions_do(engine, tier, requested_s, snapped, credits):
    price = ODD_CARD.price(engine, tier, requested_s)
    assert (price.duration_s, price.credits) == (snapped, credits)
    assert reference_price(ODD_CARD, engine, tier, requested_s) == (snapped, credits)


# ------------------------------------------------------------------ exhaustive against the oracle

FRAME_RATES = [(24, 1.001), (24, 1.0), (25, 1.0), (30, 1.001), (30, 1.0), (48, 1.0), (50, 1.0), (60, 1.001), (60, 1.0)]


def assert_same_as_reference(card: RateCard, values: list[float]) -> int:
    compared = 0
    for engine in card.engines:
        for value in values:
            expected = reference_snap(engine, value)
            assert engine.snap(value) == expected, (engine.id, value)
            for tier in card.tiers:
                price = card.price(engine.id, tier.id, value)
                assert price.duration_s == expected
                assert price.credits == math.ceil(engine.rate_per_second * tier.multiplier * expected), (
                    engine.id,
                    tier.id,
                    value,
                )
                compared += 1
    return compared


def test_every_frame_count_up_to_16_seconds_at_every_usual_frame_rate_prices_as_before():
    values = sorted(
        {seconds(frames, fps, base) for fps, base in FRAME_RATES for frames in range(1, int(16 * fps / base) + 2)}
    )
    assert len(values) > 3_000
    assert assert_same_as_reference(CARD, values) == len(values) * 5 * 4


def nudged(x: float, steps: int) -> float:
    """`steps` floats away from x (negative: below)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0] + steps
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def near_midpoints(card: RateCard) -> list[float]:
    """Values on, just next to, and up to 1.5e-6 from every midpoint where some engine's snap changes."""
    mids = {Fraction(2 * k + 1, 2) for k in range(0, 16)}
    for engine in card.engines:
        allowed = sorted(set(engine.allowed_durations()))
        mids |= {Fraction(a + b, 2) for a, b in zip(allowed, allowed[1:], strict=False) if a + b <= 60}
    values = set()
    for mid in sorted(mids):
        m = float(mid)
        values |= {nudged(m, s) for s in range(-3, 4)}
        values |= {m + k * 1e-7 for k in range(-15, 16)}
        values |= {m - 2.5e-7, m + 2.5e-7, m - 5e-7, m + 5e-7, m - 1e-6, m + 1e-6}
    return sorted(v for v in values if 0 < v <= pricing.MAX_REQUESTED_DURATION_S)


def test_durations_on_and_next_to_every_midpoint_snap_as_before():
    assert assert_same_as_reference(CARD, near_midpoints(CARD)) > 10_000


def test_odd_engines_and_tiers_price_as_before():
    values = near_midpoints(ODD_CARD)[::25] + [0.001, 1.0, 2.5, 3.0, 13.5, 20.5, 21.0, 99.9, 300.5, 599.5, 600.0]
    assert assert_same_as_reference(ODD_CARD, values) > 500


@given(st.floats(min_value=0, max_value=620, exclude_min=True), st.sampled_from(CARD.engines))
def test_any_float_snaps_as_before(value, engine):
    try:
        expected: int | str = reference_snap(engine, value)
    except PricingError as exc:
        expected = exc.message
    try:
        assert engine.snap(value) == expected
    except PricingError as exc:
        assert exc.message == expected


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), 600.000001, True, "8", None])
def test_a_duration_the_service_refuses_is_refused_in_the_same_words(bad):
    with pytest.raises(PricingError) as ours:
        CARD.price("veo-3.1", "standard", bad)
    with pytest.raises(PricingError) as before:
        reference_price(CARD, "veo-3.1", "standard", bad)
    assert (ours.value.code, ours.value.message) == (before.value.code, before.value.message)


# ------------------------------------------------------------------ the estimate, line by line

PRO = Account(plan="pro", role="editor", allowed_tiers=("draft", "standard", "high"), available=875_000)


def mixed_batch() -> list[Shot]:
    batch = [
        Shot(f"sh{i:03d}", engine.id, tier.id, seconds(frames, fps, base))
        for i, (engine, tier, (fps, base), frames) in enumerate(
            (e, t, r, f)
            for e in CARD.engines
            for t in CARD.tiers
            for r in FRAME_RATES[:4]
            for f in (1, 12, 36, 100, 120, 149, 150, 180, 181, 300, 361, 5000)
        )
    ]
    batch += [
        Shot("unknown-engine", "sora-9", "standard", 8.0),
        Shot("unknown-tier", "veo-3.1", "ultra", 8.0),
        Shot("zero", "veo-3.1", "standard", 0.0),
        Shot("bool", "veo-3.1", "standard", True),  # type: ignore[arg-type]
        Shot("one", "veo-3.1", "standard", 1),  # an int is a duration
        Shot("nan", "veo-3.1", "standard", float("nan")),
        Shot("too-long", "veo-3.1", "standard", 601.0),
        Shot("locked", "veo-3.1", "standard", 8.0, locked=True),
        Shot("locked-4k", "veo-3.1", "4k", 8.0, locked=True),
        Shot("unhashable", ["veo-3.1"], "standard", 8.0),  # type: ignore[arg-type]
    ]
    return batch


@pytest.mark.parametrize(
    "account",
    [
        PRO,
        Account(plan="enterprise", role="owner", available=10),
        Account(plan="pro", role="viewer", available=875_000),
        Account(allowed_tiers=("standard",)),
        Account(),
    ],
)
def test_the_estimate_is_line_for_line_what_it_was(account):
    batch = mixed_batch()
    included = [i % 3 != 0 for i in range(len(batch))]
    for inc in (None, included):
        ours = shots.estimate(batch, CARD, account, inc)
        before = reference_estimate(batch, CARD, account, inc)
        assert ours.lines == before.lines
        assert (ours.total, ours.draft_total, ours.refusal, ours.why_not(), ours.can_send) == (
            before.total,
            before.draft_total,
            before.refusal,
            before.why_not(),
            before.can_send,
        )


def test_a_card_without_a_draft_tier_blocks_each_shot_in_the_cards_words():
    card = RateCard(engines=CARD.engines, tiers=(Tier("standard", "Standard", Fraction(1)),))
    batch = [Shot("sh010", "veo-3.1", "standard", 7.5), Shot("sh020", "veo-3.1", "standard", 7.5)]
    ours = shots.estimate(batch, card, PRO)
    assert ours.lines == reference_estimate(batch, card, PRO).lines
    assert ours.lines[0].credits == 2_080 and ours.lines[0].blocked_code == "unknown_tier"
