"""The extension builds, installs and works under the minimum supported Blender, 4.2 LTS.

bpy is one Blender per process, so Blender 4.2 runs in its own interpreter (.venv-bpy42, made by
scripts/test) against the same real act3-server the rest of the suite uses.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
BPY42_PYTHON = os.environ.get("ACT3_BPY42_PYTHON") or str(HERE.parents[1] / ".venv-bpy42" / "bin" / "python")


def test_extension_installs_and_shows_the_balance_in_blender_4_2(live_server_factory, tmp_path: Path) -> None:
    if not Path(BPY42_PYTHON).exists():
        pytest.fail(f"the Blender 4.2 environment is missing ({BPY42_PYTHON}): run ./scripts/test, which makes it")
    # Shots render in real time, so the batch is still running when it is paused and canceled.
    live_server = live_server_factory(render_speed=1.0)
    owner = live_server.key("starter", "owner")
    headers = {"Authorization": f"Bearer {owner}"}
    # A purchase, so the history has rows and the bank a purchased part to show.
    bought = requests.post(
        f"{live_server.url}/purchases", json={"pack_id": "pack-50k"}, headers={**headers, "Idempotency-Key": "min-1"}
    )
    assert bought.status_code == 201, bought.text
    expected = requests.get(f"{live_server.url}/account/credits", headers=headers).json()
    expected_history = requests.get(f"{live_server.url}/account/credits/history?limit=2", headers=headers).json()

    env = {
        **os.environ,
        "ACT3_API_URL": live_server.url,
        "ACT3_API_KEY": owner,
        "BLENDER_USER_RESOURCES": str(tmp_path / "blender-user"),
    }
    run = subprocess.run(
        [BPY42_PYTHON, str(HERE / "check_extension.py")], env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])

    assert report["blender"].startswith("4.2")
    assert report["fresh"] is True
    # 245,000 monthly + 50,000 bought = 295,000 available on the starter plan.
    assert expected["available"] == 295_000
    assert report["header"] == "295,000 cr"
    shown = report["credits"]
    for field in ("total", "monthly_remaining", "monthly_allocation", "rollover_bank", "rollover_purchased", "held"):
        assert shown[field] == expected[field], field
    assert "245,000 of 245,000 cr" in report["panel"]
    assert report["history_ids"] == [row["id"] for row in expected_history["items"]]
    # GENERATE: two shots from the camera markers at 29.97 fps (48 frames = 1.6 s, charged as 4 s),
    # sent, paused, resumed and canceled through the operators; nothing charged, nothing held.
    assert report["shots"] == [["sh010", 1, 48, "Cam0"], ["sh020", 49, 96, "Cam1"]]
    assert report["ops"] == {
        "shots_from_markers": ["FINISHED"],
        "generate_batch": ["FINISHED"],
        "job_pause": ["FINISHED"],
        "job_resume": ["FINISHED"],
        "job_cancel": ["FINISHED"],
        "export_history_csv": ["FINISHED"],
    }
    job = report["job"]
    assert job["status"] == "canceled" and job["estimated_credits"] == 2 * 1_040
    assert [s["duration_s"] for s in job["shots"]] == [4, 4]
    assert report["unwritable_csv"].startswith("Error: Could not write ")
    after = report["after_cancel"]
    assert after["held"] == 0 and after["total"] == 295_000 - job["charged_credits"]
    assert report["registered_after_disable"] is False
    assert report["act3_threads_after_disable"] == []
