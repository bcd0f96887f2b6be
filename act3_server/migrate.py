"""Run the Alembic migrations shipped in this package (on every `serve` start and `init-demo`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    """Upgrade to head inside one locked transaction, so two processes starting together take turns."""
    cfg = alembic_config()
    with engine.connect() as conn:
        conn.execution_options(act3_write=True)  # BEGIN IMMEDIATE on SQLite
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7413001)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
