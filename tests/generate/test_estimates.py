"""The Cost Estimate: the add-on's numbers are the service's estimate and its final charge."""

from __future__ import annotations

import http.server
import socket
import threading
from typing import Any

import pytest
import requests
from support import blender, prices
from support.servers import LiveServer

from act3_credits.core import pricing
from act3_credits.core.shots import Account, Shot, estimate

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()

CARD = pricing.DEFAULT_RATE_CARD
ODD_DURATIONS = [0.9, 3.5, 5.005, 6.006, 7.5, 9.2, 12.49, 16.0]
# What each engine renders for those requests, worked by hand: the nearest allowed duration, a tie
# (3.5 s for Grok, 7.5 s for Seedance and Wan) to the longer one, the engine's range at either end.
SNAPPED = {
    "veo-3.1": [4, 4, 6, 6, 8, 8, 8, 8],
    "veo-3.1-fast": [4, 4, 6, 6, 8, 8, 8, 8],
    "seedance-2.0": [4, 4, 5, 6, 8, 9, 12, 15],
    "wan-2.6": [5, 5, 5, 5, 10, 10, 10, 15],
    "grok-imagine": [1, 4, 5, 6, 8, 9, 12, 15],
}


def test_every_engine_and_tier_estimates_as_the_service_does(live_server: LiveServer):
    shots, expected = [], {}
    for engine, row in SNAPPED.items():
        for tier in prices.TIERS:
            for requested, snapped in zip(ODD_DURATIONS, row, strict=True):
                shots.append(Shot(f"{engine}-{tier}-{requested}", engine, tier, requested))
                expected[shots[-1].name] = (snapped, prices.cost(engine, tier, snapped))
    assert len(expected) == 5 * 4 * 8
    assert expected["seedance-2.0-draft-5.005"] == (5, 613)  # 245 x 1/2 x 5 = 612.5, rounded up
    assert expected["veo-3.1-4k-16.0"] == (8, 8_320)
    ours = estimate(shots, CARD, Account(plan="enterprise", role="owner", available=5_000_000))
    assert {ln.name: (ln.duration_s, ln.credits) for ln in ours.lines} == expected
    theirs = {}
    for start in range(0, len(shots), 200):
        chunk = shots[start : start + 200]
        answer = live_server.post("/estimates", {"shots": [s.request_json() for s in chunk]}, plan="enterprise").json()
        theirs |= {s["name"]: (s["duration_s"], s["credits"]) for s in answer["shots"]}
    assert theirs == expected
    # ... and the service's card is the price list the add-on falls back on
    card = pricing.RateCard.from_json(live_server.get("/pricing").json())
    assert [(e.id, e.rate_per_second, e.allowed_durations()) for e in card.engines] == [
        (e, prices.RATE[e], prices.DURATIONS[e]) for e in prices.ENGINES
    ]
    assert [(t.id, t.multiplier) for t in card.tiers] == list(prices.MULTIPLIER.items())
    assert card.engines == CARD.engines and card.tiers == CARD.tiers


@pytest.mark.parametrize(("fps", "fps_base"), [(24, 1.0), (25, 1.0), (30, 1.001), (30, 1.0)])
def test_shots_at_every_frame_rate_are_charged_what_the_list_said(studio, live_server_factory, fps, fps_base):
    server: LiveServer = live_server_factory(render_speed=0.002)
    studio.connect(server, plan="enterprise")
    scene = studio.scene
    specs = []
    start = 1
    combos = [(e.id, t.id) for e in CARD.engines for t in CARD.tiers]
    for i, (engine, tier) in enumerate(combos):
        frames = [23, 100, 150, 181, 240, 301][i % 6]
        specs.append((f"s{i:02d}", start, start + frames - 1, engine, tier))
        start += frames
    studio.shots([(n, a, b) for n, a, b, _e, _t in specs], tags="all")
    scene.render.fps, scene.render.fps_base = fps, fps_base
    for item, (_n, _a, _b, engine, tier) in zip(scene.act3_shots, specs, strict=True):
        item.engine, item.tier = engine, tier
    props = studio.module("generate.props")
    shots = [props.to_shot(scene, it) for it in scene.act3_shots]
    ours = estimate(shots, studio.state.rate_card, Account.from_state(studio.state))
    assert all(ln.blocked_reason is None for ln in ours.lines)
    frames0 = specs[0][2] - specs[0][1] + 1
    assert shots[0].duration_s == pytest.approx(frames0 * fps_base / fps, abs=1e-6)

    assert bpy.ops.act3.generate_batch(tag="all") == {"FINISHED"}
    job_id = max(studio.state.jobs)
    studio.until(lambda: server.get(f"/jobs/{job_id}", "enterprise").json()["status"] == "completed", "the batch")
    job = server.get(f"/jobs/{job_id}", "enterprise").json()
    assert job["estimated_credits"] == job["charged_credits"] == ours.total
    charged = {s["name"]: (s["duration_s"], s["credits"]) for s in job["shots"]}
    assert charged == {ln.name: (ln.duration_s, ln.credits) for ln in ours.lines}
    # ... and both are the price list's, for the shot's length in seconds at this frame rate
    assert charged == {n: prices.price(e, t, (b - a + 1) * fps_base / fps) for n, a, b, e, t in specs}
    history = server.get("/account/credits/history", "enterprise", params={"kind": "render", "limit": 200}).json()
    assert {r["shot"]: -r["credits"] for r in history["items"] if r["job_id"] == job_id} == {
        ln.name: ln.credits for ln in ours.lines
    }


# ------------------------------------------------------------------ refusals


def test_a_batch_the_balance_does_not_cover_is_refused_with_the_shortfall(studio, live_server):
    studio.connect(live_server, plan="starter")
    studio.shots([(f"big{i:02d}", 1, 192) for i in range(60)], tags="big", tier="high")  # 60 x 4,160 cr
    with pytest.raises(RuntimeError) as err:
        bpy.ops.act3.generate_batch(tag="big")
    message = str(err.value)
    assert "Not enough credits: this needs 249,600 cr, 4,600 cr more than the 245,000 cr available." in message
    assert "Nothing was sent" in message
    assert studio.service_jobs(live_server, "starter") == []


def test_force_lets_the_service_decide_and_its_refusal_is_one_line(studio, live_server):
    studio.connect(live_server, plan="starter")
    studio.shots([(f"big{i:02d}", 1, 192) for i in range(60)], tags="big", tier="high")
    with pytest.raises(RuntimeError) as err:
        bpy.ops.act3.generate_batch(tag="big", force=True)
    # The service's 402 as the operator's one-line report: 60 x 4,160 cr against the Starter's 245,000.
    assert str(err.value).strip() == (
        "Error: Not enough credits: this needs 249,600 cr, 4,600 cr more than the 245,000 cr available."
    )
    assert studio.service_jobs(live_server, "starter") == []


def test_fit_to_budget_sends_the_first_shots_that_fit(studio, live_server):
    studio.connect(live_server, plan="starter")
    studio.shots([(f"big{i:02d}", 1, 192) for i in range(60)], tags="big", tier="high")
    assert bpy.ops.act3.generate_batch(tag="big", fit_to_budget=True) == {"FINISHED"}
    (job,) = studio.service_jobs(live_server, "starter")
    assert [s["name"] for s in job["shots"]] == [f"big{i:02d}" for i in range(58)]  # 58 x 4,160 = 241,280
    assert job["estimated_credits"] == 241_280


def test_select_what_fits_marks_the_highest_priority_shots(studio, live_server):
    studio.connect(live_server, plan="starter")
    studio.shots([(f"big{i:02d}", 1, 192) for i in range(60)], tags="big", tier="high")
    assert bpy.ops.act3.fit_to_budget(tag="big") == {"FINISHED"}
    assert [it.select for it in studio.scene.act3_shots] == [True] * 58 + [False] * 2
    assert bpy.ops.act3.generate_batch(tag="big", selected_only=True) == {"FINISHED"}
    (job,) = studio.service_jobs(live_server, "starter")
    assert len(job["shots"]) == 58


def test_switch_to_draft_makes_the_batch_affordable(studio, live_server):
    studio.connect(live_server, plan="starter")
    studio.shots([(f"big{i:02d}", 1, 192) for i in range(60)], tags="big", tier="high")
    assert bpy.ops.act3.generate_batch(tag="big", use_draft=True) == {"FINISHED"}
    (job,) = studio.service_jobs(live_server, "starter")
    assert {s["tier"] for s in job["shots"]} == {"draft"} and job["estimated_credits"] == 60 * 1_040


def test_4k_on_pro_is_refused_in_plain_words_and_nothing_is_sent(studio, live_server):
    studio.connect(live_server, plan="pro")
    studio.shots([("sh010", 1, 192)], tier="4k")
    with pytest.raises(RuntimeError) as err:
        bpy.ops.act3.generate(shot="sh010")
    assert "The 4K tier needs the Enterprise plan; this organisation is on Pro." in str(err.value)
    assert studio.service_jobs(live_server) == []


def test_a_viewers_key_is_refused_before_anything_is_sent(studio, live_server):
    studio.connect(live_server, plan="pro", role="viewer")
    studio.shots([("sh010", 1, 192)])
    with pytest.raises(RuntimeError) as err:
        bpy.ops.act3.generate()
    assert "belongs to a viewer" in str(err.value)
    assert studio.service_jobs(live_server) == []


def test_a_locked_shot_is_never_sent(studio, live_server):
    studio.connect(live_server)
    studio.shots([("sh010", 1, 192), ("sh020", 193, 384)], tags="seq")
    studio.scene.act3_shots[0].locked = True
    with pytest.raises(RuntimeError, match="Shot sh010 is locked"):
        bpy.ops.act3.generate(shot="sh010")
    assert bpy.ops.act3.generate_batch(tag="seq") == {"FINISHED"}
    (job,) = studio.service_jobs(live_server)
    assert [s["name"] for s in job["shots"]] == ["sh020"]


def test_no_shots_means_the_scene_is_one_shot(studio, live_server):
    studio.connect(live_server)
    scene = studio.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.frame_start, scene.frame_end = 1, 144
    assert len(scene.act3_shots) == 0
    assert bpy.ops.act3.generate() == {"FINISHED"}
    (job,) = studio.service_jobs(live_server)
    assert [(s["name"], s["requested_duration_s"]) for s in job["shots"]] == [(scene.name, 6.0)]


# ------------------------------------------------------------------ idempotency


class LosesFirstJobAnswer(http.server.ThreadingHTTPServer):
    """A proxy to the service that forwards the first POST /jobs and drops its answer."""

    def __init__(self, upstream: str, gateway_timeouts: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.lost = 0
        # Instead of dropping the first answer: forward this many POST /jobs and answer each with a
        # gateway's 504 (no JSON body), as a proxy in front of the service would when it is slow.
        self.gateway_timeouts = gateway_timeouts
        self.posts: list[str] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: LosesFirstJobAnswer

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        path = self.path.removeprefix("/v1")
        resp = requests.request(method, self.server.upstream + path, data=body, headers=headers, timeout=30)
        if method == "POST" and path == "/jobs":
            self.server.posts.append(self.headers.get("Idempotency-Key", ""))
            if self.server.gateway_timeouts > 0:
                self.server.gateway_timeouts -= 1
                body = b"<html>504 Gateway Time-out</html>"
                self.send_response(504)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.server.lost == 0 and not self.server.posts[:-1]:
                self.server.lost += 1
                self.connection.shutdown(socket.SHUT_RDWR)  # the job was made; its answer never arrives
                self.close_connection = True
                return
        self.send_response(resp.status_code)
        for k, v in resp.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")


def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_job(studio, live_server):
    proxy = LosesFirstJobAnswer(live_server.url)
    try:
        studio.connect(live_server)
        prefs = bpy.context.preferences.addons[blender.PACKAGE].preferences
        prefs.service_url = proxy.url
        studio.until(lambda: studio.state.credits is not None and studio.state.connection == "ok", "the proxy")
        studio.shots([("sh010", 1, 192)])
        assert bpy.ops.act3.generate(shot="sh010") == {"FINISHED"}
    finally:
        proxy.shutdown()
    assert proxy.lost == 1 and len(proxy.posts) == 2 and proxy.posts[0] == proxy.posts[1]
    (job,) = studio.service_jobs(live_server)
    assert studio.state.jobs[job["id"]].name == "sh010"


def test_confirming_again_with_the_same_key_replays_the_first_job(studio, live_server):
    studio.connect(live_server)
    studio.shots([("sh010", 1, 192)])
    key = "confirm-once-0001"
    assert bpy.ops.act3.generate(shot="sh010", idempotency_key=key) == {"FINISHED"}
    assert bpy.ops.act3.generate(shot="sh010", idempotency_key=key) == {"FINISHED"}
    jobs = studio.service_jobs(live_server)
    assert len(jobs) == 1 and jobs[0]["estimated_credits"] == 2_080
    c = live_server.get("/account/credits").json()
    assert c["held"] + (875_000 - c["total"]) == 2_080  # held once, never twice


def test_confirming_again_after_a_gateway_time_out_reuses_the_key_and_makes_one_job(studio, live_server):
    # The job was made, but every try (the client retries a 504 twice) came back as a gateway's 504.
    proxy = LosesFirstJobAnswer(live_server.url, gateway_timeouts=3)
    try:
        studio.connect(live_server)
        prefs = bpy.context.preferences.addons[blender.PACKAGE].preferences
        prefs.service_url = proxy.url
        studio.until(lambda: studio.state.credits is not None and studio.state.connection == "ok", "the proxy")
        studio.shots([("sh010", 1, 192)])
        with pytest.raises(RuntimeError, match="HTTP 504"):
            bpy.ops.act3.generate(shot="sh010")
        # The artist confirms the same shot again: the service must recognise it, not render it twice.
        assert bpy.ops.act3.generate(shot="sh010") == {"FINISHED"}
        assert len(proxy.posts) == 4 and len(set(proxy.posts)) == 1
        (job,) = studio.service_jobs(live_server)
        assert job["estimated_credits"] == 2_080
        # A new confirmation after that one went through is a new job, with a new key.
        assert bpy.ops.act3.generate(shot="sh010") == {"FINISHED"}
        assert len(studio.service_jobs(live_server)) == 2 and proxy.posts[4] != proxy.posts[0]
    finally:
        proxy.shutdown()
