"""Shots, durations, estimates and the budget guard, as the artist reads them (pure Python)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import prices

from act3_credits.core import pricing, shots
from act3_credits.core.contract import EstimateLine, Job, JobShot, Me, ServiceEstimate
from act3_credits.core.pricing import DEFAULT_RATE_CARD as CARD
from act3_credits.core.shots import Account, Marker, Shot, ShotRange
from act3_credits.core.vocabulary import Status

PRO_EDITOR = Account(plan="pro", role="editor", allowed_tiers=("draft", "standard", "high"), available=875_000)


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("fps", "fps_base", "start", "end", "seconds"),
    [
        (24, 1.0, 1, 24, 1.0),
        (24, 1.0, 1, 180, 7.5),
        (24, 1.0, 101, 292, 8.0),
        (25, 1.0, 1, 150, 6.0),
        (25, 1.0, 0, 124, 5.0),
        (30, 1.0, 1, 240, 8.0),
        (30, 1.001, 1, 180, 6.006),
        (30, 1.001, 1, 240, 8.008),
        (60, 2.0, 1, 240, 8.0),
        (24, 1.0, 10, 10, round(1 / 24, 6)),
    ],
)
def test_shot_duration_is_its_frames_at_the_scene_frame_rate(fps, fps_base, start, end, seconds):
    assert shots.duration_s(start, end, fps, fps_base) == pytest.approx(seconds, abs=1e-6)


def test_blender_32_bit_fps_base_reads_as_exact_29_97():
    import struct

    float32_1001 = struct.unpack("f", struct.pack("f", 1.001))[0]
    assert float32_1001 != 1.001
    assert shots.duration_s(1, 180, 30, float32_1001) == 6.006
    assert shots.frame_rate(30, float32_1001) == pytest.approx(29.97003, abs=1e-5)


def test_an_empty_range_lasts_zero_seconds_and_cannot_be_priced():
    assert shots.duration_s(10, 9, 24) == 0.0
    est = shots.estimate([Shot("sh010", duration_s=0.0)], CARD, PRO_EDITOR)
    assert est.lines[0].blocked_reason and "greater than 0" in est.lines[0].blocked_reason
    assert not est.can_send


@pytest.mark.parametrize(
    ("engine", "fps", "fps_base", "frames", "snapped"),
    [
        ("veo-3.1", 24, 1.0, 180, 8),  # 7.5 s: a tie between 6 and 8 goes to the longer
        ("veo-3.1", 24, 1.0, 120, 6),  # 5 s: tie 4/6 -> 6
        ("veo-3.1", 25, 1.0, 100, 4),
        ("veo-3.1", 30, 1.001, 150, 6),  # 5.005 s
        ("veo-3.1", 30, 1.001, 149, 4),  # 4.971 s
        ("wan-2.6", 24, 1.0, 144, 5),  # 6 s
        ("wan-2.6", 30, 1.0, 225, 10),  # 7.5 s: tie 5/10 -> 10
        ("seedance-2.0", 24, 1.0, 12, 4),  # shorter than the minimum
        ("seedance-2.0", 29.97, 1.0, 300, 10),
        ("seedance-2.0", 24, 1.0, 1000, 15),
        ("grok-imagine", 30, 1.001, 45, 2),  # 1.5015 s
    ],
)
def test_durations_snap_as_the_service_will_charge(engine, fps, fps_base, frames, snapped):
    seconds = shots.duration_s(1, frames, fps, fps_base)
    est = shots.estimate([Shot("sh", engine, "standard", seconds)], CARD, PRO_EDITOR)
    assert est.lines[0].duration_s == snapped
    assert est.lines[0].credits == prices.STANDARD[engine][snapped]


def test_duration_text_shows_what_is_charged_and_what_was_asked():
    assert shots.duration_text(8.0, 8) == "8 s"
    assert shots.duration_text(7.5, 8) == "8 s (7.5 s)"
    assert shots.duration_text(6.006, 6) == "6 s (6.01 s)"


# ------------------------------------------------------------------ markers


def test_each_camera_marker_starts_a_shot_that_runs_to_the_next():
    markers = [
        Marker("sh020", 49, "CamB"),
        Marker("sh010", 1, "CamA"),
        Marker("note", 30, None),  # not bound to a camera: not a shot boundary
        Marker("sh030", 121, "CamA"),
    ]
    assert shots.shots_from_markers(markers, 1, 200) == [
        ShotRange("sh010", 1, 48, "CamA"),
        ShotRange("sh020", 49, 120, "CamB"),
        ShotRange("sh030", 121, 200, "CamA"),
    ]


def test_markers_outside_the_scene_and_on_one_frame_are_ignored():
    markers = [
        Marker("before", -10, "CamA"),
        Marker("sh010", 10, "CamA"),
        Marker("dup", 10, "CamB"),
        Marker("after", 500, "CamB"),
    ]
    # the first marker (by name) wins a frame; 'before' starts before the scene and is left out
    assert shots.shots_from_markers(markers, 1, 100) == [ShotRange("dup", 10, 100, "CamB")]


def test_markers_with_the_same_name_get_unique_shot_names():
    markers = [Marker("F_01", 1, "A"), Marker("F_01", 20, "B"), Marker("", 40, "C")]
    names = [s.name for s in shots.shots_from_markers(markers, 1, 60)]
    assert names == ["F_01", "F_01.001", "C"]


def test_no_camera_markers_means_no_shots_and_the_scene_is_one_implicit_shot():
    assert shots.shots_from_markers([Marker("x", 5, None)], 1, 100) == []
    assert shots.implicit_shot_range("Scene", 1, 250) == ShotRange("Scene", 1, 250)


def test_existing_shots_are_found_again_by_name_then_by_start_frame():
    new = [ShotRange("sh010", 1, 48), ShotRange("sh020_renamed", 49, 120), ShotRange("sh040", 201, 300)]
    existing = [("sh020", 49), ("sh010", 1), ("sh030", 121)]
    assert shots.match_existing(new, existing) == [1, 0, None]


@given(st.lists(st.tuples(st.integers(-50, 400), st.booleans()), max_size=30), st.integers(1, 100), st.integers(0, 300))
def test_marker_shots_tile_the_scene_without_gaps_or_overlaps(raw, start, length):
    end = start + length
    markers = [Marker(f"m{i}", f, "Cam" if bound else None) for i, (f, bound) in enumerate(raw)]
    ranges = shots.shots_from_markers(markers, start, end)
    for a, b in zip(ranges, ranges[1:], strict=False):
        assert a.frame_end + 1 == b.frame_start
    for r in ranges:
        assert start <= r.frame_start <= r.frame_end <= end
    if ranges:
        assert ranges[-1].frame_end == end


# ------------------------------------------------------------------ tags


def test_tags_are_free_text_comma_separated_and_case_insensitive():
    assert shots.parse_tags(" Hero, seq010,hero ,, ") == ["hero", "seq010"]
    assert shots.add_tags("hero", "Final, seq010") == "hero, final, seq010"
    assert shots.remove_tags("hero, final", "HERO") == "final"
    assert shots.matches_tag("hero, seq010", "seq010")
    assert shots.matches_tag("hero, seq010", "")
    assert not shots.matches_tag("hero", "hero, final")


# ------------------------------------------------------------------ estimates


# 7.3 s on every engine and tier, worked by hand: Veo and Veo Fast snap to 8 s, Seedance to 7 s,
# Wan to 5 s (7.3 is below the 7.5 tie), Grok to 7 s. Draft is half, rounded up (857.5 -> 858).
AT_7_3_S = {  # engine: (snapped s, Draft, Standard, High, 4K)
    "veo-3.1": (8, 1_040, 2_080, 4_160, 8_320),
    "veo-3.1-fast": (8, 392, 784, 1_568, 3_136),
    "seedance-2.0": (7, 858, 1_715, 3_430, 6_860),
    "wan-2.6": (5, 245, 490, 980, 1_960),
    "grok-imagine": (7, 161, 322, 644, 1_288),
}


def test_estimate_lines_cost_what_the_price_list_says_on_every_engine_and_tier():
    ent = Account(plan="enterprise", role="owner", allowed_tiers=("draft", "standard", "high", "4k"), available=10**9)
    tiers = ("draft", "standard", "high", "4k")
    batch = [Shot(f"{engine}-{tier}", engine, tier, 7.3) for engine in AT_7_3_S for tier in tiers]
    est = shots.estimate(batch, CARD, ent)
    got = {(ln.shot.engine, ln.shot.tier): (ln.duration_s, ln.credits, ln.draft_credits) for ln in est.lines}
    assert got == {
        (engine, tier): (row[0], row[1 + k], row[1]) for engine, row in AT_7_3_S.items() for k, tier in enumerate(tiers)
    }
    assert est.total == 15_600 + 5_880 + 12_863 + 3_675 + 2_415 == 40_433  # the rows above, added up


def test_draft_first_says_what_the_same_shots_cost_at_draft():
    batch = [Shot(f"sh{i}0", "veo-3.1", "standard", 8.0) for i in range(4)]
    est = shots.estimate(batch, CARD, PRO_EDITOR)
    assert est.total == 8_320
    assert est.draft_text() == "Draft first: 4,160 cr instead of 8,320 cr"
    high = shots.estimate([Shot("sh010", "veo-3.1", "high", 8.0)], CARD, PRO_EDITOR)
    assert high.draft_text() == "Draft first: 1,040 cr instead of 4,160 cr"
    draft = shots.estimate(shots.switch_to_draft(batch), CARD, PRO_EDITOR)
    assert draft.draft_text() is None and draft.total == 4_160


def test_4k_outside_enterprise_is_refused_in_plain_words():
    est = shots.estimate([Shot("sh010", "veo-3.1", "4k", 8.0)], CARD, PRO_EDITOR)
    line = est.lines[0]
    assert line.blocked_code == "tier_not_allowed"
    assert line.blocked_reason == "The 4K tier needs the Enterprise plan; this organisation is on Pro."
    assert not est.can_send and est.why_not() == line.blocked_reason
    # the artist still sees what it would cost
    assert line.credits == 8_320


def test_4k_refused_by_the_services_allowed_tiers_for_an_unknown_plan():
    acct = Account(plan="studio-special", role="editor", allowed_tiers=("draft", "standard"), available=10**6)
    est = shots.estimate([Shot("sh010", "veo-3.1", "high", 8.0)], CARD, acct)
    assert est.lines[0].blocked_reason == "The High tier is not included in this organisation's plan."


def test_a_viewers_key_may_not_spend():
    viewer = Account(plan="pro", role="viewer", available=875_000)
    est = shots.estimate([Shot("sh010", "veo-3.1", "draft", 8.0)], CARD, viewer)
    assert est.refusal and "viewer may not spend credits" in est.refusal
    assert est.why_not() == est.refusal and not est.can_send


def test_a_locked_shot_is_left_out_of_a_batch_with_the_reason():
    batch = [Shot("sh010", duration_s=8.0, locked=True), Shot("sh020", duration_s=8.0)]
    est = shots.estimate(batch, CARD, PRO_EDITOR)
    assert est.lines[0].blocked_reason == "Shot sh010 is locked: unlock it in the Shots list to render it again."
    assert [ln.name for ln in est.sent] == ["sh020"] and est.can_send and est.total == 2_080


def test_a_shot_whose_name_the_service_would_refuse_is_left_out_with_the_reason():
    long_name = "sq010_" + "x" * 250  # 256 characters; the service takes 200
    batch = [Shot(long_name, duration_s=8.0), Shot("x" * 200, duration_s=8.0)]
    est = shots.estimate(batch, CARD, PRO_EDITOR)
    assert est.lines[0].blocked_code == "name_too_long"
    assert est.lines[0].blocked_reason == (
        f"Shot sq010_{'x' * 33}… has a name of 256 characters; ACT3 takes at most 200: rename it."
    )
    assert [ln.name for ln in est.sent] == ["x" * 200] and est.total == 2_080


def test_unticked_shots_are_left_out_and_totals_follow():
    batch = [Shot(f"sh{i}0", "veo-3.1", "standard", 8.0) for i in range(3)]
    est = shots.estimate(batch, CARD, PRO_EDITOR, included=[True, False, True])
    assert [ln.name for ln in est.sent] == ["sh00", "sh20"] and est.total == 4_160
    assert est.balance_after == 875_000 - 4_160
    none = est.with_included([False, False, False])
    assert not none.can_send and none.why_not() == "Every shot is left out: tick at least one to render."


def test_shortfall_says_by_how_much_and_fit_to_budget_keeps_shots_in_list_order():
    costs_s = [8.0, 4.0, 8.0, 6.0]  # veo standard: 2080, 1040, 2080, 1560
    batch = [Shot(f"sh{i}0", "veo-3.1", "standard", d) for i, d in enumerate(costs_s)]
    acct = Account(plan="pro", role="editor", available=4_000)
    est = shots.estimate(batch, CARD, acct)
    assert est.total == 6_760 and est.shortfall == 2_760
    assert est.shortfall_text() == "Not enough credits: this needs 6,760 cr, 2,760 cr more than the 4,000 cr available."
    assert not est.can_send
    keep = est.fit_to_budget()
    assert keep == [0, 1]  # 2080 + 1040 = 3120; sh20 (2080) no longer fits, sh30 (1560) neither
    assert keep == pricing.fit_to_budget([ln.credits for ln in est.lines], 4_000)
    fitted = est.with_included([i in keep for i in range(len(batch))])
    assert fitted.can_send and fitted.total == 3_120 and fitted.balance_after == 880


def test_fit_to_budget_skips_blocked_shots():
    batch = [Shot("a", duration_s=8.0, tier="4k"), Shot("b", duration_s=8.0), Shot("c", duration_s=4.0)]
    est = shots.estimate(batch, CARD, Account(plan="pro", role="editor", available=3_200))
    assert est.fit_to_budget() == [1, 2]


def test_unknown_engine_is_a_blocked_line_not_a_traceback():
    est = shots.estimate([Shot("sh010", "sora-9", "standard", 8.0)], CARD, PRO_EDITOR)
    assert est.lines[0].blocked_code == "unknown_engine"
    assert "Unknown engine 'sora-9'" in (est.why_not() or "")


def test_the_service_estimate_must_match_ours():
    est = shots.estimate([Shot("sh010", duration_s=8.0)], CARD, PRO_EDITOR)
    same = ServiceEstimate(shots=(EstimateLine(name="sh010", credits=2_080),))
    assert shots.differs_from_service(est, same) is None
    moved = ServiceEstimate(shots=(EstimateLine(name="sh010", credits=2_600),))
    assert "2,600 cr, not 2,080 cr" in (shots.differs_from_service(est, moved) or "")


def test_account_from_state_reads_me_and_credits():
    from act3_credits.core.state import Credits, State

    state = State()
    state.me = Me(plan="enterprise", role="admin", allowed_tiers=("draft", "4k"))
    state.allowed_tiers = ("draft", "4k")
    state.set_credits(Credits(plan="enterprise", total=10, available=7, held=3, version=1))
    acct = Account.from_state(state)
    assert acct == Account("enterprise", "admin", ("draft", "4k"), 7, 10)
    assert Account.from_state(State()).available is None


# ------------------------------------------------------------------ a dialog asks on every redraw


def redraw_batch(duration: float = 7.5, tier: str = "standard") -> list[Shot]:
    """New Shot objects each time, as the dialog builds them from the shot list on every redraw."""
    return [Shot("sh010", "veo-3.1", tier, duration), Shot("sh020", "seedance-2.0", "high", 4.5)]


def test_a_redraw_with_nothing_changed_is_answered_without_computing_again():
    first = shots.estimate(redraw_batch(), CARD, PRO_EDITOR, [True, True])
    again = shots.estimate(redraw_batch(), CARD, Account(**vars(PRO_EDITOR)), [1, 1])  # type: ignore[list-item]
    assert again is first
    assert first.total == 2_080 + 2_450


def test_the_shots_panel_and_its_rows_redrawing_do_not_make_an_open_dialog_compute_again():
    dialog = shots.estimate(redraw_batch(), CARD, PRO_EDITOR, [True, False])
    panel = shots.estimate(redraw_batch() + [Shot("sh030", duration_s=4.0)], CARD, PRO_EDITOR)
    rows = [shots.estimate([s], CARD, PRO_EDITOR) for s in redraw_batch() + [Shot("sh030", duration_s=4.0)]]
    assert [r.total for r in rows] == [2_080, 2_450, 1_040] and panel.total == 2_080 + 2_450 + 1_040
    assert shots.estimate(redraw_batch(), CARD, PRO_EDITOR, [True, False]) is dialog
    assert shots.estimate(redraw_batch() + [Shot("sh030", duration_s=4.0)], CARD, PRO_EDITOR) is panel
    assert dialog.total == 2_080


@pytest.mark.parametrize(
    ("change", "total"),
    [
        (lambda: shots.estimate(redraw_batch(duration=9.0), CARD, PRO_EDITOR, [True, True]), 2_080 + 2_450),
        (lambda: shots.estimate(redraw_batch(duration=5.0), CARD, PRO_EDITOR, [True, True]), 1_560 + 2_450),
        (lambda: shots.estimate(redraw_batch(tier="draft"), CARD, PRO_EDITOR, [True, True]), 1_040 + 2_450),
        (lambda: shots.estimate(redraw_batch(), CARD, PRO_EDITOR, [True, False]), 2_080),
        (lambda: shots.estimate(redraw_batch(), CARD, PRO_EDITOR), 2_080 + 2_450),
        (lambda: shots.estimate(redraw_batch()[:1], CARD, PRO_EDITOR, [True]), 2_080),
        (
            lambda: shots.estimate(
                redraw_batch(), pricing.RateCard.from_json(CARD.to_json()), PRO_EDITOR, [True, True]
            ),
            2_080 + 2_450,
        ),
    ],
)
def test_any_changed_input_is_estimated_again(change, total):
    first = shots.estimate(redraw_batch(), CARD, PRO_EDITOR, [True, True])
    changed = change()
    assert changed is not first
    assert changed.total == total


def test_a_new_balance_is_a_new_estimate_with_the_new_shortfall():
    rich = shots.estimate(redraw_batch(), CARD, PRO_EDITOR)
    poor = shots.estimate(redraw_batch(), CARD, Account("pro", "editor", PRO_EDITOR.allowed_tiers, 3_000))
    assert rich.shortfall == 0 and rich.can_send
    assert poor.shortfall == 1_530 and not poor.can_send


def test_a_duration_of_true_is_refused_even_right_after_a_duration_of_one():
    one = shots.estimate([Shot("sh010", "grok-imagine", "standard", 1)], CARD, PRO_EDITOR)
    true = shots.estimate([Shot("sh010", "grok-imagine", "standard", True)], CARD, PRO_EDITOR)  # type: ignore[arg-type]
    assert one.lines[0].credits == 46 and one.can_send
    assert true.lines[0].blocked_code == "invalid_duration" and not true.can_send


def test_fewer_checkboxes_than_shots_is_an_error_not_a_guess():
    with pytest.raises(IndexError):
        shots.estimate(redraw_batch(), CARD, PRO_EDITOR, [True])


def test_shots_and_estimates_stay_frozen_values():
    import dataclasses

    shot = Shot("sh010", duration_s=7.5)
    assert repr(shot) == "Shot(name='sh010', engine='veo-3.1', tier='standard', duration_s=7.5, locked=False, tags='')"
    assert shot == Shot("sh010", duration_s=7.5) and hash(shot) == hash(Shot("sh010", duration_s=7.5))
    assert shot != Shot("sh010", duration_s=8.0) and shot != ShotRange("sh010", 1, 2)
    assert dataclasses.replace(shot, tier="draft") == Shot("sh010", tier="draft", duration_s=7.5)
    assert [f.name for f in dataclasses.fields(Shot)] == ["name", "engine", "tier", "duration_s", "locked", "tags"]
    est = shots.estimate([shot], CARD, PRO_EDITOR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        shot.duration_s = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.lines[0].credits = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.total = 0  # type: ignore[misc]
    est.sent.clear()  # a caller's own list
    assert est.total == 2_080 and len(est.sent) == 1


# ------------------------------------------------------------------ budget guard


def test_guard_pauses_when_the_balance_falls_below_the_minimum():
    job = Job(id=3, name="seq010", status=Status.PROCESSING, estimated_credits=20_800, charged_credits=4_160)
    reason = shots.guard_decision(job=job, balance_total=99_000, min_balance=100_000, pause_over_estimate=True)
    assert reason == "Budget guard paused seq010: the balance fell to 99,000 cr, below your minimum of 100,000 cr."
    assert shots.guard_decision(job=job, balance_total=100_000, min_balance=100_000, pause_over_estimate=True) is None
    assert shots.guard_decision(job=job, balance_total=5, min_balance=0, pause_over_estimate=True) is None


def test_guard_pauses_a_job_charged_more_than_its_estimate():
    job = Job(id=3, name="seq010", status=Status.PROCESSING, estimated_credits=20_800, charged_credits=4_160)
    assert shots.guard_decision(
        job=job, balance_total=None, min_balance=0, pause_over_estimate=True, estimate=4_000
    ) == ("Budget guard paused seq010: it has been charged 4,160 cr, more than its estimate of 4,000 cr.")
    assert (
        shots.guard_decision(job=job, balance_total=None, min_balance=0, pause_over_estimate=False, estimate=4_000)
        is None
    )


def test_guard_leaves_paused_and_ended_jobs_alone():
    for status in (Status.PAUSED, Status.COMPLETED, Status.FAILED, Status.CANCELED):
        job = Job(id=1, status=status, estimated_credits=1, charged_credits=9)
        assert shots.guard_decision(job=job, balance_total=0, min_balance=10, pause_over_estimate=True) is None


# ------------------------------------------------------------------ queue view


def test_job_view_counts_ended_shots_and_says_what_each_cost():
    job = Job(
        id=12,
        name="seq010 batch",
        status=Status.PROCESSING,
        estimated_credits=6_240,
        charged_credits=2_080,
        shots=(
            JobShot(0, "sh010", status=Status.COMPLETED, credits=2_080),
            JobShot(1, "sh020", status=Status.FAILED, credits=2_080, error="engine timed out"),
            JobShot(2, "sh030", status=Status.QUEUED, credits=2_080),
        ),
    )
    view = shots.job_view(job)
    assert (view.done, view.total) == (2, 3) and view.progress == pytest.approx(2 / 3)
    assert view.progress_text() == "2/3 shots · 2,080 cr of 6,240 cr"
    assert [shots.shot_status_text(s) for s in view.shots] == [
        "completed · 2,080 cr",
        "failed: engine timed out · not charged",
        "queued · 2,080 cr est.",
    ]
    assert [v.id for v in shots.jobs_newest_first({3: Job(id=3), 12: job})] == [12, 3]


def test_a_large_batch_prices_every_shot_as_the_price_list_does_one_by_one():
    """Thousands of shots of every engine, tier and frame count (the estimate works each snapped
    duration and price out once and shares it): every line is what the price list says of that
    shot alone, and the refused ones (an engine the card does not have, no length, 4K on Pro)
    carry their own reason."""
    import random

    rng = random.Random(7)
    pro = Account(plan="pro", role="editor", allowed_tiers=("draft", "standard", "high"), available=10**9)
    engines = (*prices.ENGINES, "sora-9")
    batch = [
        Shot(
            f"sh{i:05d}",
            rng.choice(engines),
            rng.choice(prices.TIERS),
            shots.duration_s(1, rng.randint(0, 400), rng.choice((24, 25, 30))),
        )
        for i in range(3_000)
    ]
    est = shots.estimate(batch, CARD, pro)
    assert [ln.shot for ln in est.lines] == batch
    for ln in est.lines:
        s = ln.shot
        if s.engine == "sora-9" or s.duration_s <= 0:
            assert ln.blocked_reason and ln.credits == 0, ln
            continue
        snapped = prices.snap(s.engine, s.duration_s)
        assert (ln.duration_s, ln.credits, ln.draft_credits) == (
            snapped,
            prices.cost(s.engine, s.tier, snapped),
            prices.cost(s.engine, "draft", snapped),
        ), ln
        assert (ln.blocked_code == "tier_not_allowed") == (s.tier == "4k"), ln
    priced = [ln for ln in est.lines if ln.blocked_reason is None]
    assert est.total == sum(ln.credits for ln in priced) > 0 and len(priced) > 1_500
