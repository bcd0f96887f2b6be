"""What survives a Blender restart: the last numbers (shown stale until the first sync) and the key."""

from __future__ import annotations

import json
import os
import stat

import pytest

from act3_credits import runtime
from act3_credits.core import keystore
from act3_credits.core.cache import Cache
from act3_credits.core.contract import Me
from act3_credits.core.pricing import DEFAULT_RATE_CARD
from act3_credits.core.state import Credits, History, HistoryRow, State
from act3_credits.core.sync import Settings

URL = "http://127.0.0.1:9/v1"
CREDITS = Credits(
    org_id=1,
    plan="pro",
    total=912_500,
    monthly_remaining=862_500,
    monthly_allocation=875_000,
    rollover_bank=50_000,
    rollover_purchased=50_000,
    rollover_cap=2_187_500,
    held=6_240,
    available=906_260,
    billing_date="2026-12-01",
    as_of="2026-11-25T14:02:11Z",
    version=9,
)
ROW = HistoryRow(
    id=7,
    at="2026-11-25T14:00:00Z",
    kind="render",
    shot="sh010",
    engine="veo-3.1",
    tier="standard",
    duration_s=8,
    credits=-2080,
    monthly_delta=-2080,
    bank_delta=0,
    job_id=3,
    member="Ana (editor)",
)


ME = {
    "org": {"id": 1, "name": "Studio", "plan": "pro"},
    "member": {"name": "Ana", "role": "owner"},
    "allowed_tiers": ["draft", "standard", "high"],
    "payment_method": {"brand": "Visa", "last4": "4242"},
}


def synced_state(secret: str = "") -> State:
    state = State()
    state.set_credits(CREDITS)
    state.history = History(rows=[ROW], next_cursor="c1", loaded_once=True)
    state.rate_card = DEFAULT_RATE_CARD
    state.pricing_etag = '"card-2026-11"'
    # Even if an answer put the key in it, `me` keeps only what the add-on reads, and is saved so.
    state.me = Me.from_json({**ME, "api_key": secret} if secret else ME)
    return state


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_cache_round_trip_is_private_and_keyless(tmp_path, secret):
    cache = Cache(tmp_path / "user")
    state = synced_state(secret)
    cache.save(state, URL)

    assert mode(cache.path) == 0o600
    assert secret not in cache.path.read_text()
    assert [p.name for p in cache.path.parent.iterdir()] == ["act3_cache.json"]  # no temp file left

    restored = State()
    snap = Cache(tmp_path / "user").load(URL)
    assert snap is not None
    snap.apply_to(restored)
    assert restored.credits == CREDITS
    assert restored.credits_from_cache and restored.is_stale()
    assert restored.header_text() == "906,260 cr · 6,240 held"  # what can be spent, and what jobs hold
    assert restored.history.rows == [ROW]
    assert restored.rate_card is not None and restored.rate_card.price("veo-3.1", "high", 8).credits == 4160
    assert restored.allowed_tiers == ("draft", "standard", "high")
    assert restored.payment_method == {"brand": "Visa", "last4": "4242"}
    assert restored.me is not None and (restored.me.org_name, restored.me.role) == ("Studio", "owner")


def test_a_cache_for_another_service_or_a_damaged_one_is_ignored(tmp_path):
    cache = Cache(tmp_path)
    cache.save(synced_state(), URL)
    assert Cache(tmp_path).load("https://elsewhere.example/v1") is None
    cache.path.write_text("{not json")
    assert Cache(tmp_path).load(URL) is None
    cache.path.write_text(json.dumps({"format": 1, "credits": {"total": 5}, "rate_card": {"engines": 3}}))
    assert Cache(tmp_path).load(URL) is None


def test_stale_at_start_shows_the_cached_balance_before_any_sync(tmp_path):
    Cache(tmp_path).save(synced_state(), URL)
    try:
        runtime.start(Settings(URL, "", online_access=False), tmp_path)
        state = runtime.state()
        assert state.header_text() == "906,260 cr · 6,240 held"
        assert state.is_stale()
        assert state.connection == "disabled"
    finally:
        runtime.stop()


def test_key_file_is_private_and_round_trips(tmp_path, secret):
    user = tmp_path / "user"
    keystore.save_key(user, f"  {secret}\n")
    assert keystore.load_key(user) == secret
    assert mode(user / "api_key") == 0o600
    assert mode(user) == 0o700
    keystore.clear_key(user)
    assert keystore.load_key(user) == ""
    keystore.clear_key(user)  # twice is fine


def test_environment_wins_then_preferences_then_the_file(tmp_path, monkeypatch, secret):
    monkeypatch.delenv("ACT3_API_KEY", raising=False)
    monkeypatch.delenv("ACT3_API_URL", raising=False)
    assert keystore.resolve("", "", tmp_path) == ("https://api.act3ai.com/v1", "", "none")
    keystore.save_key(tmp_path, "from-file")
    assert keystore.resolve("https://a.example/v1", "", tmp_path) == ("https://a.example/v1", "from-file", "file")
    assert keystore.resolve("https://a.example/v1", "typed", tmp_path)[1:] == ("typed", "preferences")
    monkeypatch.setenv("ACT3_API_KEY", secret)
    monkeypatch.setenv("ACT3_API_URL", "http://farm:8000/v1")
    assert keystore.resolve("https://a.example/v1", "typed", tmp_path) == ("http://farm:8000/v1", secret, "environment")


@pytest.mark.parametrize("bad", ["", "   "])
def test_saving_an_empty_key_forgets_it(tmp_path, bad):
    keystore.save_key(tmp_path, "k")
    keystore.save_key(tmp_path, bad)
    assert not (tmp_path / "api_key").exists()
