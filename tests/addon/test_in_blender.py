"""The extension inside the real Blender module, against a real act3-server on 127.0.0.1.

The zip is built and installed through Blender's extension system once per module, then enabled
for each test (a fresh State, worker and window-manager properties) and disabled after it. Timers
do not fire in the headless module, so `Shell.until` calls the add-on's timer function itself.
What the artist would read comes from the real draw code, drawn into a recording layout; what it
should read comes from asking the service with `requests`.
"""

from __future__ import annotations

import csv
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import blender
from support.layout import RecordingLayout
from support.servers import LiveServer

from act3_credits.core import formatting

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()

PACK = "pack-250k"


class Shell(blender.EnabledAddon):
    """The enabled add-on, seen from a test."""

    @property
    def ui(self) -> Any:
        return bpy.context.window_manager.act3

    def synced_with(self, server: LiveServer, plan: str = "pro", role: str = "owner") -> dict[str, Any]:
        """Wait until the add-on shows exactly the balance the service reports now; returns it."""
        expected = server.get("/account/credits", plan, role).json()
        self.until(
            lambda: (
                self.state.credits is not None
                and self.state.credits.to_json() | {"as_of": ""} == expected | {"as_of": ""}
            ),
            f"the balance {expected['available']}",
        )
        return expected

    def header(self, alignment: str = "RIGHT") -> RecordingLayout:
        layout = RecordingLayout()
        context = SimpleNamespace(region=SimpleNamespace(alignment=alignment), window=None)
        self.module("credits.ui").draw_topbar(SimpleNamespace(layout=layout), context)
        return layout

    def panel(self, idname: str) -> RecordingLayout:
        layout = RecordingLayout()
        getattr(bpy.types, idname).draw(SimpleNamespace(layout=layout), bpy.context)
        return layout


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    blender.install_extension()
    blender.disable_extension()
    yield


@pytest.fixture
def shell(installed: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    monkeypatch.delenv("ACT3_API_KEY", raising=False)
    monkeypatch.delenv("ACT3_API_URL", raising=False)
    bpy.context.preferences.system.use_online_access = True
    shell = Shell(blender.enable_extension())
    yield shell
    # Leave no key behind, so the next enable starts unconfigured (and never calls a real host).
    shell.module("core.keystore").clear_key(shell.module("session").user_dir())
    if blender.PACKAGE in bpy.context.preferences.addons:
        blender.disable_extension()


def all_history(server: LiveServer, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = server.get("/account/credits/history", params={**params, "limit": 200, "cursor": cursor}).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def render_batch(server: LiveServer, count: int) -> None:
    """`count` one-second shots across three tiers, rendered to the end by the service."""
    shots = [
        {"name": f"sh{i:03d}", "engine": "grok-imagine", "tier": ("draft", "standard", "high")[i % 3], "duration_s": 1}
        for i in range(count)
    ]
    job = server.post("/jobs", {"name": "seq010", "shots": shots}, idem=f"batch-{count}").json()
    deadline = time.monotonic() + 60
    while server.get(f"/jobs/{job['id']}").json()["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, "the service did not finish the batch"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------- the balance


def test_top_bar_shows_the_services_balance_after_connecting(shell: Shell, live_server: LiveServer):
    assert shell.header().operator_button("act3.open_credits").text == "ACT3: set API key"
    # No key yet: Buy Credits is greyed out, and says why.
    assert not bpy.ops.act3.buy_credits.poll()
    with pytest.raises(RuntimeError, match="No ACT3 API key: add one in Preferences"):
        bpy.ops.act3.buy_credits()
    shell.connect(live_server)
    expected = shell.synced_with(live_server)
    assert expected["available"] == 875_000
    button = shell.header().operator_button("act3.open_credits")
    assert (button.text, button.icon, button.alert) == ("875,000 cr", "NONE", False)
    # The top bar's left region draws the same function: it must stay empty there.
    assert shell.header("LEFT").items == []
    tooltip = bpy.types.ACT3_OT_open_credits.description(bpy.context, None)
    assert tooltip.startswith(
        f"875,000 cr available for new jobs, as of {formatting.clock(shell.state.last_sync_wall)}"
    )


def test_credits_panel_numbers_are_the_services_own(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    live_server.post("/purchases", {"pack_id": "pack-50k"}, idem="bank-it")
    render_batch(live_server, 6)
    # A paused job keeps what its unrendered shots will cost on hold.
    shots = [{"name": f"hold{i}", "engine": "veo-3.1", "tier": "high", "duration_s": 8} for i in range(20)]
    job = live_server.post("/jobs", {"name": "on hold", "shots": shots}, idem="hold").json()
    live_server.post(f"/jobs/{job['id']}/pause")
    deadline = time.monotonic() + 30
    while live_server.get(f"/jobs/{job['id']}").json()["status"] != "paused":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c = shell.synced_with(live_server)
    panel = shell.panel("ACT3_PT_credits")
    texts = panel.texts()
    pairs = list(zip(texts, texts[1:], strict=False))
    assert ("Available", formatting.credits(c["available"])) in pairs
    (bar,) = panel.of_kind("progress")
    assert bar.text == f"{formatting.credits(c['monthly_remaining'], unit=False)} of 875,000 cr"
    assert bar.factor == pytest.approx(c["monthly_remaining"] / c["monthly_allocation"])
    assert ("Rolled over", formatting.credits(c["rollover_bank"] - c["rollover_purchased"])) in pairs
    assert ("Cap", formatting.credits(c["rollover_cap"])) in pairs
    assert ("Never expire", formatting.credits(c["rollover_purchased"])) in pairs
    assert ("Held by jobs", formatting.credits(c["held"])) in pairs
    assert c["rollover_purchased"] == 50_000 and c["held"] > 0
    assert any(t.startswith(f"Refills {formatting.day_month(c['billing_date'])} (") for t in texts)
    # The top bar: what can be spent, and the held part, without hovering; the colour follows it.
    button = shell.header().operator_button("act3.open_credits")
    assert button.text == f"{formatting.credits(c['available'])} · {formatting.credits(c['held'], unit=False)} held"


def change_the_balance_without_an_event(server: LiveServer, plan: str, credits: int) -> None:
    """Take `credits` off the monthly allocation straight in the service's database: no event says so,
    so only a fetch of the balance (a refresh) can bring it to the add-on."""
    from sqlalchemy import create_engine, text

    from act3_server.db import normalize_url

    engine = create_engine(normalize_url(server.database_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE accounts SET monthly_remaining = monthly_remaining - :c, version = version + 1"
                    " WHERE org_id = :org"
                ),
                {"c": credits, "org": server.org_id(plan)},
            )
    finally:
        engine.dispose()


def test_refresh_fetches_a_balance_changed_since_the_last_sync_and_open_credits_works_headless(
    shell: Shell, live_server: LiveServer
):
    shell.connect(live_server)
    before = shell.synced_with(live_server)
    change_the_balance_without_an_event(live_server, "pro", 12_345)
    after = live_server.get("/account/credits").json()
    assert after["available"] == before["available"] - 12_345
    # While the event stream is connected, nothing else asks for the balance: only refresh brings it.
    shell.until(lambda: True, "a drain")
    assert shell.state.credits.available == before["available"]
    assert bpy.ops.act3.refresh() == {"FINISHED"}
    shell.synced_with(live_server)
    assert shell.state.credits.available == after["available"] == 875_000 - 12_345
    assert shell.header().operator_button("act3.open_credits").text.startswith(formatting.credits(862_655))
    assert bpy.ops.act3.open_credits() == {"FINISHED"}  # no window: reports the balance instead


def test_low_balance_turns_the_top_bar_red(shell: Shell, live_server: LiveServer):
    shell.connect(live_server, plan="starter")
    # Spend the Starter allocation (245,000) down to under 5 %.
    shots = [{"name": f"big{i}", "engine": "veo-3.1", "tier": "high", "duration_s": 8} for i in range(56)]
    job = live_server.post("/jobs", {"name": "drain", "shots": shots}, plan="starter", idem="drain").json()
    assert job["estimated_credits"] > 245_000 * 0.95
    c = shell.synced_with(live_server, plan="starter")
    assert c["available"] < 245_000 * 0.05
    button = shell.header().operator_button("act3.open_credits")
    assert button.alert and button.icon == "ERROR"  # red, and it says what can still be spent
    assert button.text == f"{formatting.credits(c['available'])} · {formatting.credits(c['held'], unit=False)} held"


def test_a_service_that_goes_away_leaves_the_last_balance_marked(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    shell.synced_with(live_server)
    live_server.stop()
    shell.until(lambda: shell.state.connection == "offline", "noticing the service is gone", timeout=30)
    button = shell.header().operator_button("act3.open_credits")
    assert (button.text, button.icon) == ("875,000 cr", "UNLINKED")
    status = shell.panel("ACT3_PT_credits").operator_button("act3.status")
    assert status.text.startswith("Offline · as of ") and status.alert
    assert bpy.types.ACT3_OT_status.description(bpy.context, None).startswith(shell.state.last_error)


def test_online_access_off_sends_nothing_and_says_how_to_turn_it_on(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    shell.synced_with(live_server)
    bpy.context.preferences.system.use_online_access = False
    try:
        shell.until(lambda: shell.state.connection == "disabled", "going offline")
        assert not bpy.ops.act3.refresh.poll()
        with pytest.raises(RuntimeError, match="Allow Online Access"):
            bpy.ops.act3.refresh()
        assert shell.panel("ACT3_PT_credits").operator_button("act3.status").text == "Online access is off"
        tooltip = bpy.types.ACT3_OT_status.description(bpy.context, None)
        assert "Online access is off: nothing is sent to ACT3." in tooltip
        assert "Preferences > System > Network > Allow Online Access" in tooltip
    finally:
        bpy.context.preferences.system.use_online_access = True
    shell.until(lambda: shell.state.connection == "ok", "back online")


# --------------------------------------------------------------------------------------- buying


def test_buying_a_pack_with_the_owner_key_raises_the_balance_once(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    before = shell.synced_with(live_server)["available"]
    assert bpy.ops.act3.buy_credits(pack_id=PACK) == {"FINISHED"}
    shell.until(
        lambda: shell.state.credits.available == before + 250_000 and "Bought" in (shell.state.last_message or ""),
        "the new balance",
    )
    assert live_server.get("/account/credits").json()["available"] == before + 250_000
    purchases = [r for r in all_history(live_server) if r["kind"] == "purchase"]
    assert [p["credits"] for p in purchases] == [250_000]
    assert "250,000 cr" in shell.state.last_message and "Visa •••• 4242" in shell.state.last_message


def test_the_buy_dialog_lists_the_services_packs_and_the_card_on_file(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    shell.synced_with(live_server)
    shell.module("session").request("packs")
    shell.until(lambda: shell.state.packs, "the credit packs")
    layout = RecordingLayout()
    shell.module("credits.draw").draw_buy_dialog(layout, shell.state, SimpleNamespace(pack="pack-250k"))
    assert "Confirm charges $475 to Visa •••• 4242." in layout.texts()
    after = formatting.credits(shell.state.credits.available + 250_000)
    assert layout.texts()[layout.texts().index("Available after") + 1] == after
    items = shell.module("credits.ops")._pack_items(None, bpy.context)
    # Blender keeps pointers into the list it was handed: unchanged packs must give the same list.
    assert shell.module("credits.ops")._pack_items(None, bpy.context) is items
    served = live_server.get("/credit-packs").json()["packs"]
    assert [(i[0], i[1]) for i in items] == [
        (p["id"], f"{formatting.credits(p['credits'])} — {p['price']}") for p in served
    ]


def test_a_viewer_is_told_to_ask_an_owner_or_admin_instead_of_buying(shell: Shell, live_server: LiveServer):
    shell.connect(live_server, role="viewer")
    shell.until(lambda: shell.state.me is not None, "who the key belongs to")
    assert not bpy.ops.act3.buy_credits.poll()
    with pytest.raises(RuntimeError, match="owner or an admin"):
        bpy.ops.act3.buy_credits(pack_id=PACK)
    # Had the add-on not known the role yet, the service's own refusal says the same, in one line:
    # a script (`blender -b`) waits for the answer and gets it as the operator's error.
    shell.state.me = None
    with pytest.raises(RuntimeError, match="owner or an admin") as refused:
        bpy.ops.act3.buy_credits(pack_id=PACK)
    assert "\n" not in str(refused.value).strip() and "Traceback" not in str(refused.value)
    assert live_server.get("/account/credits").json()["available"] == 875_000


def test_a_script_buying_a_pack_the_service_does_not_sell_is_told_so(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    before = shell.synced_with(live_server)["available"]
    for pack in ("nonexistent", "pack-250k\nX", "p" * 10_000):
        with pytest.raises(RuntimeError) as refused:
            bpy.ops.act3.buy_credits(pack_id=pack)
        line = str(refused.value).strip()
        assert line.startswith("Error: ") and "\n" not in line and len(line) < 400, line
    assert live_server.get("/account/credits").json()["available"] == before


def test_test_connection_shows_organisation_plan_and_role(shell: Shell, live_server: LiveServer):
    shell.connect(live_server, role="editor")
    assert bpy.ops.act3.test_connection() == {"FINISHED"}
    shell.until(lambda: (shell.state.last_message or "").startswith("Connected"), "the connection test")
    me = live_server.get("/me", role="editor").json()
    layout = RecordingLayout()
    type(shell.prefs).draw(
        SimpleNamespace(layout=layout, service_url=shell.prefs.service_url, generate=shell.prefs.generate), bpy.context
    )
    texts = layout.texts()
    assert f"Organisation: {me['org']['name']}" in texts
    assert "Plan: Pro" in texts
    assert f"Signed in as {me['member']['name']}" in texts and me["member"]["name"].endswith("(editor)")


# --------------------------------------------------------------------------------------- history


def test_history_pages_newest_first_filters_on_the_service_and_exports_csv(
    shell: Shell, live_server: LiveServer, tmp_path: Path
):
    render_batch(live_server, 60)
    shell.connect(live_server)
    everything = all_history(live_server)
    assert len(everything) == 61  # 60 renders and the month's refill

    # The first page only: 50 rows, newest first, mirrored into the list the panel shows.
    shell.until(lambda: len(shell.ui.history_rows) == 50, "the first history page")
    assert [r.row_id for r in shell.ui.history_rows] == [r["id"] for r in everything[:50]]
    first = shell.ui.history_rows[0]
    newest = everything[0]
    local = formatting.parse_time(newest["at"]).astimezone()
    assert (first.date, first.shot, first.tier, first.cost) == (
        local.strftime("%d %b"),
        newest["shot"],
        {"draft": "Draft", "standard": "Standard", "high": "High"}[newest["tier"]],
        formatting.signed_credits(newest["credits"]),
    )
    assert first.tooltip.startswith(f"{formatting.day(newest['at'])} · {newest['shot']} · Grok Imagine")
    assert bpy.ops.act3.history_more.poll()

    # Load more: the next keyset page, appended.
    assert bpy.ops.act3.history_more() == {"FINISHED"}
    shell.until(lambda: len(shell.ui.history_rows) == 61, "the second page")
    assert [r.row_id for r in shell.ui.history_rows] == [r["id"] for r in everything]
    assert not bpy.ops.act3.history_more.poll()
    totals = shell.state.history.tier_totals()
    for tier in ("draft", "standard", "high"):
        assert totals[tier] == -sum(r["credits"] for r in everything if r["tier"] == tier)

    # Filters ask the service, which filters on its side.
    assert bpy.ops.act3.history_filter(tier="high", shot="SH0") == {"FINISHED"}
    high = all_history(live_server, tier="high", shot="SH0")
    assert 0 < len(high) < 50
    shell.until(lambda: [r.row_id for r in shell.ui.history_rows] == [r["id"] for r in high], "the filtered history")
    assert (shell.ui.history_tier, shell.ui.history_shot) == ("high", "SH0")
    texts = shell.panel("ACT3_PT_history").texts()
    assert f"{len(high)} rows loaded, all shown" in texts

    # Typing in the panel's fields filters too (a queued request, no network in the callback).
    shell.ui.history_tier = "ALL"
    shell.ui.history_shot = "sh00"
    shot = all_history(live_server, shot="sh00")
    shell.until(lambda: [r.row_id for r in shell.ui.history_rows] == [r["id"] for r in shot], "the shot filter")

    # Export what is loaded.
    out = tmp_path / "history.csv"
    assert bpy.ops.act3.export_history_csv(filepath=str(out)) == {"FINISHED"}
    with out.open(newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert [(r["shot"], int(r["credits"]), r["tier"]) for r in exported] == [
        (r["shot"], r["credits"], r["tier"]) for r in shot
    ]

    # A write that fails half way (a full disk, injected: a real disk will not fill on demand)
    # leaves the file that was there as it was, and no part of the new one.
    before = out.read_bytes()

    def full_disk(rows):
        yield ["a row"]
        raise OSError(28, "No space left on device")

    export = shell.module("credits.export")
    real = export.csv_rows
    export.csv_rows = full_disk
    try:
        with pytest.raises(RuntimeError, match="Could not write .*No space left on device"):
            bpy.ops.act3.export_history_csv(filepath=str(out))
    finally:
        export.csv_rows = real
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("history.csv")] == ["history.csv"]
    # A link is written through, not replaced by a file.
    link = tmp_path / "latest.csv"
    link.symlink_to(out)
    assert bpy.ops.act3.export_history_csv(filepath=str(link)) == {"FINISHED"}
    assert link.is_symlink() and out.read_bytes() == before
    # "//" means beside the .blend: with none saved yet there is no such place (not the working folder).
    assert not bpy.data.filepath
    with pytest.raises(RuntimeError, match="save the .blend first"):
        bpy.ops.act3.export_history_csv(filepath="//history.csv")

    # A filter longer than any shot name (pasted by mistake) is cut to 200 characters, whole ones,
    # and answered as "nothing matches", not refused for its size.
    shell.ui.history_shot = "sh00" + "é" * 10_000
    assert shell.ui.history_shot == "sh00" + "é" * 196
    shell.until(lambda: len(shell.ui.history_rows) == 0, "the empty list")
    shell.until(lambda: not shell.state.history.loading, "the answer")
    assert shell.state.history.rows == [] and shell.state.history.loaded_once
    assert "16 KiB" not in (shell.state.last_error or "") and "16 KiB" not in (shell.state.last_message or "")


# --------------------------------------------------------------------------------------- hygiene


def test_the_api_key_is_kept_private_and_never_saved_into_a_blend_or_the_preferences(
    shell: Shell, live_server: LiveServer, tmp_path: Path
):
    key = shell.connect(live_server)
    shell.synced_with(live_server)
    assert shell.prefs.api_key == ""  # the field only takes a key, it does not keep it
    key_file = Path(shell.module("session").user_dir()) / "api_key"
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False)
    assert key.encode() not in blend.read_bytes()
    bpy.context.preferences.is_dirty = True
    assert bpy.ops.wm.save_userpref() == {"FINISHED"}
    userpref = Path(bpy.utils.resource_path("USER")) / "config" / "userpref.blend"
    assert userpref.exists() and key.encode() not in userpref.read_bytes()

    # After a file load the list is filled again and the sync carries on.
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    shell.synced_with(live_server)
    shell.until(lambda: len(shell.ui.history_rows) == len(shell.state.history.rows), "the list after loading")

    # Forgetting the key removes the file and stops the sync.
    assert bpy.ops.act3.forget_key() == {"FINISHED"}
    assert not key_file.exists()
    shell.until(lambda: shell.state.connection == "unconfigured", "the sync to stop")


def test_a_paste_that_cannot_be_a_key_is_said_at_once_and_keeps_the_key_in_use(shell: Shell, live_server: LiveServer):
    key = shell.connect(live_server)
    shell.synced_with(live_server)
    key_file = Path(shell.module("session").user_dir()) / "api_key"
    saved = key_file.read_bytes()
    for pasted, says in [
        ("   ", "Not saved: only spaces were pasted."),
        (key[:12] + "\n" + key[12:], "Not saved: the pasted key has a space, a line break or a non-ASCII character."),
        (key[:12] + " " + key[12:], "Not saved: the pasted key has a space, a line break or a non-ASCII character."),
        ("act3_clé_" + key[9:], "Not saved: the pasted key has a space, a line break or a non-ASCII character."),
    ]:
        shell.state.last_message = None
        shell.prefs.api_key = pasted
        assert shell.prefs.api_key == ""  # never left in the field, good or bad
        assert (shell.state.last_message or "").startswith(says), shell.state.last_message
        assert key[12:] not in shell.state.last_message
        assert key_file.read_bytes() == saved  # the working key is still the one saved
    assert shell.state.connection == "ok"
    shell.synced_with(live_server)


def test_a_key_that_cannot_be_stored_still_leaves_the_field_and_works_until_blender_closes(
    shell: Shell, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
):
    def read_only_folder(directory: Any, key: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(shell.module("core.keystore"), "save_key", read_only_folder)
    key = shell.connect(live_server)

    # Never left in the field (Blender would write it into userpref.blend), and the sync still uses it.
    assert shell.prefs.api_key == ""
    shell.synced_with(live_server)
    assert shell.state.last_message.startswith("Could not store the ACT3 API key")
    assert "Permission denied" in shell.state.last_message and key not in shell.state.last_message
    prefs_layout = RecordingLayout()
    source, hint = shell.module("session").key_source()
    shell.module("credits.draw").draw_preferences(prefs_layout, shell.prefs, shell.state, source, hint, True)
    assert f"Key in use until Blender closes (…{key[-4:]}): it could not be stored" in prefs_layout.texts()
    assert key not in "\n".join(prefs_layout.texts())

    # Forget Key forgets it too.
    assert bpy.ops.act3.forget_key() == {"FINISHED"}
    shell.until(lambda: shell.state.connection == "unconfigured", "the sync to stop")


def test_unregister_leaves_nothing_behind(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    shell.synced_with(live_server)
    timers = shell.module("timers")
    header = shell.module("credits.ui")
    names = ("ACT3_PT_credits", "ACT3_PT_history", "ACT3_UL_history", "ACT3_OT_refresh", "ACT3_OT_buy_credits")
    assert all(hasattr(bpy.types, n) for n in names)
    features = [shell.module(m).classes for m in ("prefs", "credits", "generate")]
    registered = [c.__name__ for classes in features for c in classes]
    assert len(registered) > len(names)
    worker_threads = [t for t in threading.enumerate() if t is not threading.main_thread()]
    assert worker_threads

    blender.disable_extension()

    assert not any(hasattr(bpy.types, n) for n in names)
    assert not [n for n in registered if hasattr(bpy.types, n)]
    assert header.draw_topbar not in bpy.types.TOPBAR_HT_upper_bar._dyn_ui_initialize()
    assert not bpy.app.timers.is_registered(timers.tick)
    assert not hasattr(bpy.types.WindowManager, "act3")
    addon = shell.module("addon")
    assert addon._on_load_post not in bpy.app.handlers.load_post
    assert addon._on_load_pre not in bpy.app.handlers.load_pre
    deadline = time.monotonic() + 2  # stop() aborts a long poll under way
    while any(t.is_alive() for t in worker_threads) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in worker_threads if t.is_alive()]

    # And it comes back cleanly.
    blender.enable_extension()
    assert hasattr(bpy.types, "ACT3_PT_credits") and bpy.app.timers.is_registered(timers.tick)


def test_key_file_lives_in_the_extensions_user_folder(shell: Shell, live_server: LiveServer):
    # Blender's per-extension user folder, <user extensions>/.user/<repository>/<package>: kept when the
    # extension is upgraded or reinstalled, unlike the extension's own folder, which is replaced.
    expected = Path(bpy.utils.user_resource("EXTENSIONS")) / ".user" / blender.REPO_MODULE / "act3_credits"
    key = shell.connect(live_server)
    shell.synced_with(live_server)
    key_file = expected / "api_key"
    assert key_file.read_text().strip() == key
    assert Path(shell.module("session").user_dir()) == expected
    installed = Path(shell.package.__file__).resolve().parent
    assert installed.name == "act3_credits" and installed != expected.resolve()
    assert not any(key in p.read_text(errors="ignore") for p in installed.rglob("*") if p.is_file())


def test_the_monthly_refill_is_announced_once_with_what_rolled_over(shell: Shell, live_server: LiveServer):
    shell.connect(live_server)
    c = shell.synced_with(live_server)
    render_batch(live_server, 3)  # 3 one-second Grok Imagine shots: 23 + 46 + 92 = 161 cr
    c = shell.synced_with(live_server)
    left = c["monthly_remaining"]
    assert left == 875_000 - 161
    announced: list[str] = []
    reports = shell.module("generate.ops")
    original = reports.notify
    reports.notify = lambda message, level="INFO": (announced.append(message), original(message, level))
    # The GENERATE timer follows the worker's events; no timer fires headless, so beat it once here.
    shell.module("generate")._tick()
    try:
        live_server.post("/dev/clock", {"now": f"{c['billing_date']}T00:00:05Z"})
        shell.until(lambda: announced, "the refill's announcement")
        shell.until(lambda: shell.state.credits.rollover_bank == left, "the refilled balance")
    finally:
        reports.notify = original
    # Pro rolls over up to 2,187,500 cr: everything left this period goes into the bank.
    assert announced == [
        f"Monthly refill: +875,000 cr. {formatting.credits(left)} unused last period rolled into the Rollover Bank."
    ]
    assert shell.state.last_message == announced[0]
