"""Enabling the add-on does not wait for the HTTP stack: `requests` comes with the first client.

The shell's chain at enable is credits.ui -> prefs -> session -> runtime -> sync -> client; everything
below session is pure Python, so a fresh interpreter shows what that chain imports (pure Python).
"""

from __future__ import annotations

import json
import subprocess
import sys

HTTP_STACK = ("requests", "urllib3", "charset_normalizer", "idna", "certifi")

PROBE = """
import json, sys
import act3_credits.runtime, act3_credits.core.keystore, act3_credits.core.shots, act3_credits.core.client
from act3_credits.core.sync import Settings
from act3_credits import runtime
runtime.start(Settings(online_access=False))  # what register() does, without a key: no threads
before = sorted(m for m in sys.modules if m.split(".")[0] in {roots})
from act3_credits.core.client import Client
Client("http://127.0.0.1:9/v1", "key").close()
after = sorted(m for m in sys.modules if m.split(".")[0] in {roots})
runtime.stop()
print(json.dumps([before, after]))
"""


def test_the_core_chain_the_shell_imports_at_enable_leaves_requests_to_the_first_client():
    roots = {m.split(".")[0] for m in HTTP_STACK}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(roots=sorted(roots))], capture_output=True, text=True, check=True
    )
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == []
    assert "requests" in after and "urllib3" in after
