"""The contracts nobody else checks: the migrations build `db.py`'s tables, and docs/api.md lists the app.

- Alembic has one head; a fresh database upgraded to it (SQLite and PostgreSQL) is at that head and
  `compare_metadata` finds no difference from `act3_server.db.metadata` (tables, columns and their
  types, nullability, indexes, unique and foreign keys). Nothing here names a revision, so a new
  migration is checked as soon as it exists.
- Every `METHOD /path` docs/api.md names exists in the app, every app route under /v1 is in its
  Endpoints list, the error table lists every error code at the status the service answers with, and
  what the docs say is open answers without a key.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from srv_helpers import Api
from support.servers import sqlite_url

from act3_credits.core.vocabulary import ErrorCode
from act3_server import db, errors, migrate
from act3_server.server import build_service

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"
SERVER_SOURCES = sorted((ROOT / "act3_server").glob("*.py"))
PRICING = ROOT / "act3_credits" / "core" / "pricing.py"  # unknown_engine and the other pricing codes

# --- Alembic head == db.py ---------------------------------------------------------------------


def test_the_migrations_have_one_head_reached_from_the_base():
    script = ScriptDirectory.from_config(migrate.alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1, f"the migrations branch: heads {heads}"
    chain = list(script.walk_revisions("base", "heads"))
    assert len(chain) == len(list(script.walk_revisions())) >= 1  # every revision is on the one line
    assert chain[-1].down_revision is None


# Objects a migration creates on purpose without a counterpart in db.py, each with its reason. Only
# these names are skipped; any other difference fails.
MIGRATION_ONLY = {
    # 0002: on PostgreSQL, a trigram index of shot names, created only when `CREATE EXTENSION pg_trgm`
    # succeeds (the ledger works without it), so db.py cannot declare it unconditionally.
    "ix_history_shots_key_trgm",
}


def _name(diff: object) -> str | None:
    """The name of the index, constraint or table an autogenerate difference is about."""
    if isinstance(diff, tuple) and len(diff) >= 2:
        return getattr(diff[1], "name", None)
    return None  # a column-level modification comes as a list of tuples: never skipped


def test_a_database_migrated_to_head_has_exactly_the_tables_of_db_py(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)  # a second start changes nothing
        heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert set(context.get_current_heads()) == set(heads)
            diff = [d for d in compare_metadata(context, db.metadata) if _name(d) not in MIGRATION_ONLY]
        assert diff == [], "the migrations and act3_server/db.py disagree:\n" + "\n".join(map(str, diff))
        assert sorted(db.metadata.tables) != []
    finally:
        engine.dispose()


# --- docs/api.md == the app's routes --------------------------------------------------------------

METHOD_PATH = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)[^`]*`((?:\s*\|\s*`/[^`\s]+`)*)")
PARAM = re.compile(r"\{[^}]*\}")


def _normal(path: str) -> str:
    return PARAM.sub("{}", path.rstrip("/") or "/")


def _documented(text: str) -> set[tuple[str, str]]:
    """Each `METHOD /path` in `text`; `POST /v1/jobs/{id}/pause` | `/resume` names /v1/jobs/{id}/resume too."""
    found = set()
    for method, path, more in METHOD_PATH.findall(text):
        found.add((method, _normal(path)))
        parent = path.rsplit("/", 1)[0]
        for tail in re.findall(r"`(/[^`\s]+)`", more):
            found.add((method, _normal(parent + tail)))
    return found


def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.S | re.M)
    assert match, f"docs/api.md has no '## {title}' section"
    return match.group(1)


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    # The dev clock is on, so its endpoint exists too; no background work is needed to list routes.
    service = build_service(sqlite_url(tmp_path_factory.mktemp("routes")), dev_clock=True, run_jobs=False)
    found = {
        (method, _normal(route.path))
        for route in service.app.routes
        for method in (getattr(route, "methods", None) or ())
        if method != "HEAD"
    }
    service.engine.dispose()
    return found


def test_the_parser_reads_the_endpoint_lines():
    sample = "- `GET /v1/jobs?status=&limit=50` → x. `GET /v1/jobs/{id}` → Job.\n- `POST /v1/jobs/{id}/pause` | `/resume` | `/cancel` → Job."
    assert _documented(sample) == {
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{}"),
        ("POST", "/v1/jobs/{}/pause"),
        ("POST", "/v1/jobs/{}/resume"),
        ("POST", "/v1/jobs/{}/cancel"),
    }


def test_every_endpoint_docs_api_md_names_exists_in_the_app(routes: set[tuple[str, str]]) -> None:
    documented = _documented(API_MD.read_text(encoding="utf-8"))
    assert len(documented) >= 15
    assert sorted(documented - routes) == []


def test_every_v1_route_of_the_app_is_in_the_endpoints_list(routes: set[tuple[str, str]]) -> None:
    listed = _documented(_section(API_MD.read_text(encoding="utf-8"), "Endpoints"))
    v1 = {r for r in routes if r[1].startswith("/v1/")}
    assert len(v1) >= 15
    assert sorted(v1 - listed) == []
    assert sorted(r for r in listed if not r[1].startswith("/v1/")) == []  # the list is the /v1 API


def _error_table(markdown: str) -> dict[str, int]:
    """code -> status from the `| status | codes |` table; what is in parentheses (extra fields) is not a code."""
    table = {}
    for status, cell in re.findall(r"^\| (\d{3}) \| (.*) \|$", _section(markdown, "Errors"), re.M):
        for code in re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cell)):
            assert code not in table, f"{code} is in the error table twice"
            table[code] = int(status)
    return table


def test_the_error_table_lists_every_code_at_its_status():
    table = _error_table(API_MD.read_text(encoding="utf-8"))
    assert table["insufficient_credits"] == 402 and "required_credits" not in table  # the parser
    assert {code: table.get(code) for code in errors.STATUS} == errors.STATUS
    assert sorted(errors.STATUS) == sorted(ErrorCode)  # one list of codes, each with its status
    # A documented code the service no longer answers with is drift too: each is answered somewhere
    # besides the STATUS table, by name or (where the module does not import ErrorCode) as its string.
    source = "\n".join(p.read_text(encoding="utf-8") for p in SERVER_SOURCES)
    source = re.sub(r"\nSTATUS: .*?\n}\n", "\n", source, flags=re.S) + PRICING.read_text(encoding="utf-8")
    assert "ErrorCode.NOT_FOUND: 404" not in source  # the table itself is left out
    unused = [code for code in table if f'"{code}"' not in source and f"ErrorCode.{ErrorCode(code).name}" not in source]
    assert unused == []


def test_what_the_docs_call_open_answers_without_a_key_and_the_v1_api_does_not(api: Api) -> None:
    intro = API_MD.read_text(encoding="utf-8").split("\n## ", 1)[0]
    open_paths = {path for method, path in _documented(intro)}
    assert {"/openapi.json", "/docs", "/redoc"} <= open_paths
    for path in open_paths:
        assert api.client.get(path).status_code == 200, path
    assert api.client.get("/v1/me").status_code == 401


def test_pause_resume_and_cancel_of_an_ended_job_are_409_invalid_state(api: Api) -> None:
    job = api.client.post(
        "/v1/jobs",
        json={"name": "x", "shots": [{"name": "sh010", "engine": "veo-3.1", "tier": "standard", "duration_s": 8}]},
        headers=api.headers(role="editor", idem="ended"),
    ).json()
    canceled = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.headers())
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    for action in ("pause", "resume", "cancel"):
        r = api.client.post(f"/v1/jobs/{job['id']}/{action}", headers=api.headers())
        assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_state"), action
    # ... and docs/api.md says so for all three (it once named only pause and resume).
    doc = " ".join(_section(API_MD.read_text(encoding="utf-8"), "Endpoints").split())
    sentence = re.search(r"`409 invalid_state`[^.]*\.", doc)
    assert sentence and all(action in sentence.group(0) for action in ("pause", "resume", "cancel"))
