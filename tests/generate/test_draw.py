"""What the Cost Estimate dialog and the Render Queue show, drawn into a recording layout."""

from __future__ import annotations

from types import SimpleNamespace

from support.layout import RecordingLayout

from act3_credits.core.pricing import DEFAULT_RATE_CARD as CARD
from act3_credits.core.shots import Account, Shot, estimate
from act3_credits.core.state import State
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
        ("Duration", "8 s (7.5 s)"),
        ("Estimated", "4,160 cr"),
        ("Available", "875,000 cr"),
        ("Balance after", "870,840 cr"),
    ]:
        assert pair in p, pair
    assert layout.find("Draft first: 1,040 cr instead of 4,160 cr").icon == "INFO"
    assert any(i.kind == "prop" and i.property == "use_draft" for i in layout.items)
    assert layout.texts()[-1].startswith("Prices from the ACT3 rate card")


def test_one_4k_shot_on_pro_is_refused_with_the_reason():
    est = estimate([Shot("sh010", "veo-3.1", "4k", 8.0)], CARD, PRO)
    layout = RecordingLayout()
    draw.draw_estimate_single(layout, est, CARD)
    refusal = layout.find("The 4K tier needs the Enterprise plan; this organisation is on Pro.")
    assert refusal.alert and refusal.icon == "CANCEL"


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
    assert layout.find("Shot sh050 is locked").alert
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
    line = layout.find("Not enough credits")
    assert line.text == "Not enough credits: this needs 12,480 cr, 3,480 cr more than the 9,000 cr available."
    assert line.alert
    assert ("Balance after", "-3,480 cr") in pairs(layout)
    assert layout.find("-3,480 cr").alert
    assert any(i.kind == "prop" and i.property == "fit_to_budget" for i in layout.items)
    assert any(i.kind == "prop" and i.property == "use_draft" for i in layout.items)
    layout.operator_button("act3.buy_credits", "Buy Credits")
    # Fit to Budget on: the first two fit, the third is left out and said so
    fitted = est.with_included([True, True, False])
    layout = RecordingLayout()
    draw.draw_estimate_batch(layout, fitted, CARD, fitted_out=[False, False, True], op=op)
    assert layout.find("sh2 is left out to fit the budget.")
    assert ("Total", "8,320 cr for 2 shots") in pairs(layout)
    assert not [i for i in layout.items if i.text and i.text.startswith("Not enough")]


def test_before_the_first_sync_the_dialog_says_whose_prices_these_are():
    est = estimate([Shot("sh010", duration_s=8.0)], CARD, Account())
    layout = RecordingLayout()
    draw.draw_estimate_single(layout, est, CARD, synced=False)
    assert ("Available", "— cr") in pairs(layout)
    assert layout.find("built-in rate card until the first sync")


def job(job_id: int, status: str, shot_states: list[str], **extra) -> dict:
    shots = [
        {
            "index": i,
            "name": f"sh{i + 1}0",
            "engine": "veo-3.1",
            "tier": "standard",
            "duration_s": 8,
            "credits": 2_080,
            "status": s,
            "error": "engine timed out" if s == "failed" else None,
        }
        for i, s in enumerate(shot_states)
    ]
    charged = 2_080 * shot_states.count("completed")
    return {
        "id": job_id,
        "name": f"batch {job_id}",
        "status": status,
        "estimated_credits": 2_080 * len(shots),
        "charged_credits": charged,
        "held": 0,
        "shots": shots,
        **extra,
    }


def test_render_queue_shows_each_job_with_progress_per_shot_status_and_cost_and_controls():
    state = State()
    state.jobs = {
        7: job(7, "processing", ["completed", "completed", "processing", "queued"]),
        6: job(6, "paused", ["completed", "queued"]),
        5: job(5, "completed", ["completed", "failed"]),
    }
    layout = RecordingLayout()
    draw.draw_render_queue(layout, state, CARD, {6: "Budget guard paused batch 6: the balance fell to 9 cr."})
    bars = layout.of_kind("progress")
    assert [(b.factor, b.text) for b in bars] == [
        (0.5, "2/4 shots · 4,160 cr of 8,320 cr"),
        (0.5, "1/2 shots · 2,080 cr of 4,160 cr"),
        (1.0, "2/2 shots · 2,080 cr of 4,160 cr"),
    ]
    texts = layout.texts()
    assert texts[:2] == ["batch 7", "Processing"]
    assert "completed · 2,080 cr" in texts and "queued · 2,080 cr est." in texts
    assert layout.find("failed: engine timed out · not charged").alert
    assert layout.find("Budget guard paused batch 6").alert
    ops = [(i.operator, i.properties.job_id) for i in layout.operators() if i.operator.startswith("act3.job_")]
    assert ops == [("act3.job_pause", 7), ("act3.job_cancel", 7), ("act3.job_resume", 6), ("act3.job_cancel", 6)]
    retry = layout.operator_button("act3.retry_shot")
    assert (retry.properties.job_id, retry.properties.shot_index) == (5, 1)


def test_render_queue_keeps_only_the_latest_ended_jobs():
    state = State()
    state.jobs = {i: job(i, "completed", ["completed"]) for i in range(1, 8)}
    layout = RecordingLayout()
    draw.draw_render_queue(layout, state, CARD)
    assert [t for t in layout.texts() if t.startswith("batch")] == ["batch 7", "batch 6", "batch 5"]
    empty = RecordingLayout()
    draw.draw_render_queue(empty, State(), CARD)
    assert empty.texts() == ["No ACT3 jobs yet: Generate a shot or a batch."]
