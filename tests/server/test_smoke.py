"""The fixtures and the live server work end to end on both databases."""

from __future__ import annotations

import requests
from support.servers import LiveServer


def test_live_server_answers_me_and_credits(live_server: LiveServer) -> None:
    me = live_server.get("/me", plan="starter", role="editor").json()
    assert me["org"]["plan"] == "starter"
    # No cap set: `cap` is null (docs/api.md, "Budgets and caps").
    assert me["member"] == {"id": me["member"]["id"], "name": "Cleo (editor)", "role": "editor", "cap": None}
    credits = live_server.get("/account/credits", plan="starter").json()
    assert credits["total"] == 245_000 and credits["available"] == 245_000
    assert requests.get(live_server.root_url + "/openapi.json", timeout=5).status_code == 200


def test_live_server_on_postgres(live_server_factory, fresh_postgres_url: str) -> None:
    srv = live_server_factory(database_url=fresh_postgres_url)
    assert srv.get("/account/credits", plan="enterprise").json()["total"] == 5_000_000
    srv.stop()
    srv.start()
    assert srv.get("/me").status_code == 200
