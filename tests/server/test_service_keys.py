"""`act3-server keys list / revoke / create --member`: keys are listed without ever showing a key or
its hash, a revoked key is refused from the very next request by a running server (every path,
the long poll's too), and a key is rotated by making a new one for the same member first."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import requests
from support.servers import LiveServer, run_cli


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "act3_server", *args], capture_output=True, text=True, timeout=120)


def listed(srv: LiveServer, *extra: str) -> list[dict]:
    return list(json.loads(run_cli("keys", "list", "--database", srv.database_url, "--json", *extra).stdout)["keys"])


def status(srv: LiveServer, key: str, path: str = "/me") -> int:
    return requests.get(srv.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


def test_keys_list_shows_who_and_when_but_never_a_key_or_its_hash(live_server: LiveServer) -> None:
    srv = live_server
    keys = listed(srv)
    assert len(keys) == 12  # 3 demo orgs x 4 roles
    assert set(keys[0]) == {"id", "org_id", "org", "member_id", "member", "role", "label", "created", "revoked"}
    pro = [k for k in keys if k["org_id"] == srv.org_id("pro")]
    assert sorted(k["role"] for k in pro) == ["admin", "editor", "owner", "viewer"]
    assert all(k["label"] == "demo" and k["created"] and k["revoked"] is None for k in pro)
    assert [k["org_id"] for k in listed(srv, "--org", str(srv.org_id("pro")))] == [srv.org_id("pro")] * 4

    table = run_cli("keys", "list", "--database", srv.database_url).stdout
    lines = table.splitlines()
    assert lines[0].split() == ["id", "org", "member", "role", "label", "created", "revoked"]
    assert len(lines) == 13 and "Cleo (editor)" in table
    for org in srv.orgs["orgs"]:
        for key in org["keys"].values():
            digest = hashlib.sha256(key.encode()).hexdigest()
            for out in (table, json.dumps(keys)):
                assert key not in out and digest not in out and digest[:16] not in out


def test_a_revoked_key_is_refused_from_the_next_request_and_rotation_keeps_the_member(live_server: LiveServer) -> None:
    srv = live_server
    org = srv.org_id("pro")
    made = run_cli("keys", "create", "--database", srv.database_url, "--org", str(org), "--role", "editor")
    old_key = made.stdout.strip()
    old_id = int(made.stderr.split()[1])  # "key N for member M (editor) of org O; ..."
    assert status(srv, old_key) == 200
    me = requests.get(srv.url + "/me", headers={"Authorization": f"Bearer {old_key}"}, timeout=30).json()
    member_id = me["member"]["id"]
    (entry,) = [k for k in listed(srv) if k["id"] == old_id]
    assert (entry["member_id"], entry["role"], entry["label"], entry["revoked"]) == (
        member_id,
        "editor",
        "random",
        None,
    )

    # Rotate: a second key for the same member, used side by side until the old one is revoked.
    made = run_cli("keys", "create", "--database", srv.database_url, "--member", str(member_id))
    new_key = made.stdout.strip()
    new_id = int(made.stderr.split()[1])
    assert new_key != old_key and new_id != old_id
    new_me = requests.get(srv.url + "/me", headers={"Authorization": f"Bearer {new_key}"}, timeout=30).json()
    assert new_me["member"] == me["member"]
    assert status(srv, old_key) == 200

    last = srv.get("/events").json()["last_seq"]
    events_path = f"/events?after={last}&wait=0"
    assert status(srv, old_key, events_path) == 200
    done = run_cli("keys", "revoke", "--database", srv.database_url, str(old_id))
    assert done.stdout.startswith(f"revoked key {old_id} of {me['member']['name']} (editor, org {org}) at ")
    # The very next request, on every path: no cache to wait out, in the running server.
    assert status(srv, old_key) == 401
    assert status(srv, old_key, events_path) == 401
    assert status(srv, old_key, "/account/credits") == 401
    assert status(srv, new_key) == 200 and status(srv, new_key, events_path) == 200
    assert status(srv, srv.key("pro", "editor")) == 200  # nobody else's key is touched

    (entry,) = [k for k in listed(srv) if k["id"] == old_id]
    assert entry["revoked"] is not None
    assert old_id not in [k["id"] for k in listed(srv, "--active")]

    again = cli("keys", "revoke", "--database", srv.database_url, str(old_id))
    assert again.returncode == 0 and "already revoked" in again.stdout
    (same,) = [k for k in listed(srv) if k["id"] == old_id]
    assert same["revoked"] == entry["revoked"]  # the first date stays

    unknown = cli("keys", "revoke", "--database", srv.database_url, "999999")
    assert unknown.returncode == 2 and "no key 999999" in unknown.stderr
    bad = cli("keys", "create", "--database", srv.database_url, "--member", "999999")
    assert bad.returncode == 2 and "no member 999999" in bad.stderr
    both = cli("keys", "create", "--database", srv.database_url, "--member", str(member_id), "--role", "owner")
    assert both.returncode == 2


def test_a_demo_key_can_be_revoked_too(live_server: LiveServer) -> None:
    srv = live_server
    viewer = srv.key("starter", "viewer")
    (entry,) = [k for k in listed(srv) if k["org_id"] == srv.org_id("starter") and k["role"] == "viewer"]
    run_cli("keys", "revoke", "--database", srv.database_url, str(entry["id"]))
    assert status(srv, viewer) == 401
    # init-demo does not bring it back.
    run_cli("init-demo", "--database", srv.database_url)
    assert status(srv, viewer) == 401


def test_act3_server_says_bad_input_in_one_line_and_writes_nothing(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/a.db"
    run_cli("init-demo", "--database", db)
    before = (tmp_path / "a.db").read_bytes()
    (tmp_path / "notes.txt").write_text("not a database, but a page of notes\n" * 200)
    huge = "99999999999999999999999"
    cases = [
        (("keys", "list", "--database", "garbage"), "is not a database URL"),
        (("keys", "list", "--database", "mysql://x/y"), "mysql is not supported"),
        (("keys", "list", "--database", f"sqlite:///{tmp_path}/"), "is a folder; give SQLite a file in it"),
        (("keys", "list", "--database", f"sqlite:///{tmp_path}/typo/a.db"), "there is no folder"),
        (("keys", "list", "--database", f"sqlite:///{tmp_path}/notes.txt"), "refused: file is not a database"),
        (("init-demo", "--database", ""), "--database is empty"),
        (("keys", "list", "--database", db, "--org", huge), f"there is no id {huge}"),
        (("keys", "revoke", "--database", db, huge), f"there is no id {huge}"),
        (("keys", "create", "--database", db, "--org", "1", "--role", "owner", "--name", "x\x1b]0;pwn\x07"),
         "cannot hold control characters"),  # fmt: skip
        (("keys", "create", "--database", db, "--org", "1", "--role", "owner", "--name", "n" * 201), "at most 200"),
        (("keys", "create", "--database", db, "--org", "1", "--role", "owner", "--name", ""), "cannot be empty"),
        (("billing", "run", "--database", db, "--at", "9999-12-31T23:59:59-14:00"), "before the year 9000"),
        (("serve", "--database", db, "--port", "99999"), "99999 is not between 0 and 65535"),
        (("serve", "--database", db, "--render-speed", "nan"), "nan is not between 0 and 1000"),
        (("serve", "--database", db, "--workers", "0"), "0 is not between 1 and 64"),
    ]
    for args, says in cases:
        proc = cli(*args)
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and says in last, (args, proc.stderr)
    assert not (tmp_path / "typo").exists()
    assert (tmp_path / "a.db").read_bytes() == before
