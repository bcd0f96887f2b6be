"""The extension installed in the real Blender module, connected to a real act3-server.

Timers do not fire in the headless module: `Studio.until` runs the add-on's timer itself, which
drains the worker as Blender's event loop would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import blender
from support.servers import LiveServer

bpy = blender.import_bpy()


class Studio(blender.EnabledAddon):
    """The enabled add-on and the scene, as a test drives them."""

    @property
    def scene(self) -> Any:
        return bpy.context.scene

    @property
    def settings(self) -> Any:
        return self.module("generate.props").settings(bpy.context)

    def connect(self, server: LiveServer, plan: str = "pro", role: str = "owner") -> str:
        key = super().connect(server, plan, role)
        self.until(
            lambda: self.state.credits is not None and self.state.me is not None and self.state.rate_card is not None,
            "the first sync",
        )
        return key

    def shots(self, specs: list[tuple[str, int, int]], **common: Any) -> list[Any]:
        """Replace the scene's shots with (name, frame_start, frame_end) at 24 fps."""
        scene = self.scene
        scene.render.fps, scene.render.fps_base = 24, 1.0
        scene.act3_shots.clear()
        for name, start, end in specs:
            item = scene.act3_shots.add()
            item.name, item.frame_start, item.frame_end = name, start, end
            for key, value in common.items():
                setattr(item, key, value)
        scene.act3_shots_index = 0
        # Fetched again once every shot is added: adding to a collection may move its items, and a
        # reference taken before that points at freed memory (the tags test read stale shots).
        return list(scene.act3_shots)

    def service_jobs(self, server: LiveServer, plan: str = "pro") -> list[dict[str, Any]]:
        return server.get("/jobs", plan).json()["jobs"]


@pytest.fixture(scope="session")
def installed() -> Iterator[None]:
    blender.install_extension()
    blender.disable_extension()
    yield


@pytest.fixture
def studio(installed: None, live_server_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Studio]:
    # Depending on the factory makes the add-on stop (and drop its long poll) before the servers do,
    # so they shut down at once instead of waiting for the poll to end.
    monkeypatch.delenv("ACT3_API_KEY", raising=False)
    monkeypatch.delenv("ACT3_API_URL", raising=False)
    bpy.context.preferences.system.use_online_access = True
    studio = Studio(blender.enable_extension())
    studio.scene.act3_shots.clear()
    settings = studio.settings
    settings.guard_enabled, settings.guard_min_balance, settings.guard_pause_over_estimate = True, 0, True
    settings.intercept_ops = settings.tag_filter = ""
    yield studio
    studio.module("core.keystore").clear_key(studio.module("session").user_dir())
    if hasattr(studio.scene, "act3_shots"):
        studio.scene.act3_shots.clear()
    if blender.PACKAGE in bpy.context.preferences.addons:
        blender.disable_extension()
