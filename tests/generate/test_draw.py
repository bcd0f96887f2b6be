"""What the Cost Estimate dialog and the Render Queue show, drawn into a recording layout."""

from __future__ import annotations

from types import SimpleNamespace

from support.layout import RecordingLayout

from act3_credits.core.contract import Job, JobShot
from act3_credits.core.pricing import DEFAULT_RATE_CARD as CARD
from act3_credits.core.shots import Account, Shot, estimate
from act3_credits.core.state import State
from act3_credits.core.vocabulary import Status
from act3_credits.generate import draw

PRO = Account(plan="pro", role="editor", allowed_tiers=("draft", "standard", "high"), available=875_000)


def pairs(layout: RecordingLayout) -> list[tuple[str, str]]:
    texts = layout.texts()
    return list(zip(texts, texts[1:], strict=False))


def test_one_shot_shows_name_engine_tier_duration_credits_and_the_balance():
    est = estimate([Shot("sh010", "veo-3.1", "high", 7.5)], CARD, PRO)
    layout = RecordingLayout()
    op = SimpleNamespace(use_draft=False)
    draw.draw_estimate_single(layout, est, CARD, op=op)
    p = pairs(layout)
    for pair in [
        ("Shot", "sh010"),
        ("Engine", "Veo 3.1"),
        ("Quality", "High"),
        ("Billed length", "8 s*"),
        ("Estimated", "4,160 cr"),
        ("Available", "875,000 cr"),
        ("Balance after", "870,840 cr"),
    ]:
        assert pair in p, pair
    assert layout.find("* 7.5 s → billed as 8 s: Veo 3.1 renders 4, 6 or 8 s").icon == "INFO"
    assert layout.find("Draft first: 1,040 cr instead of 4,160 cr").icon == "INFO"
    assert layout.find("Confirm holds 4,160 cr for 1 shot.").icon == "CHECKMARK"
    assert any(i.kind == "prop" and i.property == "use_draft" for i in layout.items)
    assert layout.texts()[-1] == "ACT3 rate card 2026-11; the service confirms it on Confirm."


def test_one_4k_shot_on_pro_is_refused_with_the_reason():
    est = estimate([Shot("sh010", "veo-3.1", "4k", 8.0)], CARD, PRO)
    layout = RecordingLayout()
    draw.draw_estimate_single(layout, est, CARD)
    verdict = layout.find("Confirm sends nothing: sh010 cannot be rendered.")
    assert verdict.alert and verdict.icon == "CANCEL"
    assert "The 4K tier needs the Enterprise plan; this organisation is on Pro." in layout.text()


def test_a_batch_has_a_checkbox_row_per_shot_the_total_and_what_draft_would_cost():
    batch = [Shot(f"sh{i + 1}0", "veo-3.1", "standard", 8.0) for i in range(4)] + [
        Shot("sh050", "veo-3.1", "standard", 8.0, locked=True)
    ]
    rows = [SimpleNamespace(include=True) for _ in batch]
    rows[3].include = False
    est = estimate(batch, CARD, PRO, [r.include for r in rows])
    layout = RecordingLayout()
    draw.draw_estimate_batch(layout, est, CARD, rows=rows, op=SimpleNamespace(use_draft=False, fit_to_budget=False))
    boxes = [i for i in layout.items if i.kind == "prop" and i.property == "include"]
    assert [b.text for b in boxes] == ["sh10", "sh20", "sh30", "sh40", "sh050"]
    assert [b.active for b in boxes] == [True, True, True, False, False]  # left out, and locked
    icons = [i.icon for i in layout.items if i.kind == "label" and i.text == "" and i.container == "split"]
    assert icons[1:] == ["CHECKMARK", "CHECKMARK", "CHECKMARK", "BLANK1", "ERROR"]  # sent, unticked, cannot be sent
    assert layout.find("Left out: Shot sh050 is locked").text.startswith("Left out: Shot sh050 is locked: unlock it")
    assert ("Total", "6,240 cr for 3 shots") in pairs(layout)
    assert ("Balance after", "868,760 cr") in pairs(layout)
    assert layout.find("Draft first: 3,120 cr instead of 6,240 cr")


def test_a_batch_the_balance_does_not_cover_offers_fit_draft_and_buy():
    batch = [Shot(f"sh{i}", "veo-3.1", "high", 8.0) for i in range(3)]  # 3 x 4,160
    poor = Account(plan="pro", role="editor", available=9_000)
    est = estimate(batch, CARD, poor)
    layout = RecordingLayout()
    op = SimpleNamespace(use_draft=False, fit_to_budget=False)
    draw.draw_estimate_batch(layout, est, CARD, op=op)
    line = layout.find("Confirm sends nothing")
    assert line.text == "Confirm sends nothing: 3,480 cr short."
    assert line.alert
    assert "Fit to Budget, Switch to Draft or Buy Credits." in layout.texts()
    assert ("Balance after", "-3,480 cr") in pairs(layout)
    assert layout.find("-3,480 cr").alert
    assert any(i.kind == "prop" and i.property == "fit_to_budget" for i in layout.items)
    assert any(i.kind == "prop" and i.property == "use_draft" for i in layout.items)
    layout.operator_button("act3.buy_credits", "Buy Credits")
    # Fit to Budget on: the first two fit, the third is left out and said so
    fitted = est.with_included([True, True, False])
    layout = RecordingLayout()
    draw.draw_estimate_batch(layout, fitted, CARD, fitted_out=[False, False, True], op=op)
    assert layout.find("1 shot left out to fit the budget.")
    assert ("Total", "8,320 cr for 2 shots") in pairs(layout)
    assert not layout.find("Confirm holds 8,320 cr for 2 shots.").alert
    # Both toggles stay where they were, so Fit to Budget can be switched off again.
    assert [i.property for i in layout.items if i.kind == "prop" and i.property != "include"] == [
        "use_draft",
        "fit_to_budget",
    ]


def test_before_the_first_sync_the_dialog_says_whose_prices_these_are():
    est = estimate([Shot("sh010", duration_s=8.0)], CARD, Account())
    layout = RecordingLayout()
    draw.draw_estimate_single(layout, est, CARD, synced=False)
    assert ("Available", "— cr") in pairs(layout)
    assert layout.find("Built-in prices until the first sync; confirmed on Confirm.")


def job(job_id: int, status: str, shot_states: list[str], **extra) -> Job:
    shots = tuple(
        JobShot(
            index=i,
            name=f"sh{i + 1}0",
            engine="veo-3.1",
            tier="standard",
            requested_duration_s=8.0,
            duration_s=8,
            credits=2_080,
            status=Status(s),
            error="engine timed out" if s == "failed" else None,
        )
        for i, s in enumerate(shot_states)
    )
    charged = 2_080 * shot_states.count("completed")
    return Job(
        id=job_id,
        name=f"batch {job_id}",
        status=Status(status),
        estimated_credits=2_080 * len(shots),
        charged_credits=charged,
        held=0,
        shots=shots,
        **extra,
    )


def test_render_queue_shows_each_job_with_progress_charge_and_controls_and_its_shots_on_demand():
    state = State()
    state.jobs = {
        7: job(7, "processing", ["completed", "completed", "processing", "queued"]),
        6: job(6, "paused", ["completed", "queued"]),
        5: job(5, "completed", ["completed", "failed"]),
        4: job(4, "canceled", ["completed", "canceled", "canceled"]),
    }
    layout = RecordingLayout()
    draw.draw_render_queue(
        layout, state, CARD, {6: "Budget guard paused batch 6: the balance fell to 9 cr."}, expanded={5}
    )
    bars = layout.of_kind("progress")
    assert [(b.factor, b.text) for b in bars] == [
        (0.5, "2/4 · 4,160 cr"),
        (0.5, "1/2 · 2,080 cr"),
        (1.0, "1/2 · 2,080 cr"),
        (1 / 3, "1/3 · 2,080 cr"),  # a canceled job stops where it was canceled, never "3/3"
    ]
    texts = layout.texts()
    assert "Processing · 2 to go" in texts
    assert "Canceled · 2 canceled" in texts
    assert layout.find("Paused: Budget guard paused batch 6").alert
    # Only job 5 is unfolded: its shots, with what each cost.
    assert [t for t in texts if t.startswith("sh")] == ["sh10", "sh20"]
    assert texts[texts.index("sh10") + 1] == "2,080 cr"
    assert layout.find("not charged").alert
    ops = [(i.operator, i.properties.job_id) for i in layout.operators() if i.operator.startswith("act3.job_")]
    assert ops == [
        ("act3.job_toggle_shots", 7),
        ("act3.job_pause", 7),
        ("act3.job_cancel", 7),
        ("act3.job_toggle_shots", 6),
        ("act3.job_resume", 6),
        ("act3.job_cancel", 6),
        ("act3.job_toggle_shots", 5),
        ("act3.job_toggle_shots", 4),
    ]
    retry = layout.operator_button("act3.retry_shot")
    assert (retry.properties.job_id, retry.properties.shot_index) == (5, 1)


def test_a_long_job_lists_a_bounded_number_of_shots_and_says_how_many_more():
    state = State()
    state.jobs = {9: job(9, "processing", ["completed"] * 20 + ["queued"] * 40)}
    layout = RecordingLayout()
    draw.draw_render_queue(layout, state, CARD, expanded={9})
    assert len([t for t in layout.texts() if t.startswith("sh")]) == draw.QUEUE_SHOTS_SHOWN
    assert layout.find("… and 48 more shots")
    folded = RecordingLayout()
    draw.draw_render_queue(folded, state, CARD)
    assert not [t for t in folded.texts() if t.startswith("sh")]


def test_render_queue_lists_the_latest_twenty_jobs():
    state = State()
    state.jobs = {i: job(i, "completed", ["completed"]) for i in range(1, 31)}
    layout = RecordingLayout()
    draw.draw_render_queue(layout, state, CARD)
    names = [t for t in layout.texts() if t.startswith("batch")]
    assert names == [f"batch {i}" for i in range(30, 10, -1)]
    empty = RecordingLayout()
    draw.draw_render_queue(empty, State(), CARD)
    assert empty.texts() == ["No ACT3 jobs yet."]
