"""Alembic environment. act3_server.migrate passes its own connection (already in a locked transaction)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from act3_server.db import metadata, normalize_url

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if context.is_offline_mode():
        context.configure(url=normalize_url(config.get_main_option("sqlalchemy.url") or ""), target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is None:
        engine = create_engine(normalize_url(config.get_main_option("sqlalchemy.url") or ""))
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
