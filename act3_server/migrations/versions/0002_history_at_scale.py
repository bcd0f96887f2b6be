"""history at scale: keyset indexes per filter and an index of shot names

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 10:00:00

History pages are `(at, id) < (:at, :id)` ranges, newest first, of one org:
- `(org_id, at, id)` (from 0001) serves the plain page; `(org_id, tier, at, id)` a `tier=` page;
  `(org_id, kind, at, id)`, partial on `kind <> 'render'`, a page of a rare kind (renders, nearly
  every row, page well through the plain index and do not pay for this one);
- `(org_id, shot, at, id)` pages one shot name;
- `history_shots` lists each org's shot names with their lower-case form and how many shots were
  queued under each, so `shot=` (a case-insensitive substring) first finds the matching names in
  this small table and then reads only their rows (ledger.py). Trigram indexes on the history
  itself were measured and dropped: shot names share most of their trigrams (`sq010_sh0010`), so
  a one-shot search still intersected posting lists of the whole history (35-45 ms at 1M rows).
  On PostgreSQL the names get a pg_trgm index when the extension can be created.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transactions_org_tier_at_id", "transactions", ["org_id", "tier", "at", "id"])
    op.create_index(
        "ix_transactions_org_kind_at_id",
        "transactions",
        ["org_id", "kind", "at", "id"],
        sqlite_where=sa.text("kind <> 'render'"),
        postgresql_where=sa.text("kind <> 'render'"),
    )
    op.create_index("ix_transactions_org_shot_at_id", "transactions", ["org_id", "shot", "at", "id"])
    op.create_table(
        "history_shots",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("shot", sa.String(length=200), nullable=False),
        sa.Column("shot_key", sa.String(length=200), nullable=False),
        sa.Column("shots", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "shot"),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    # Names already in the history; shot_key is Python's lower(), as the ledger writes it.
    names = conn.execute(
        sa.text("SELECT org_id, shot, count(*) AS n FROM transactions WHERE shot IS NOT NULL GROUP BY org_id, shot")
    ).all()
    if names:
        conn.execute(
            sa.text("INSERT INTO history_shots (org_id, shot, shot_key, shots) VALUES (:o, :s, :k, :n)"),
            [{"o": r.org_id, "s": r.shot, "k": r.shot.lower(), "n": r.n} for r in names],
        )
    if conn.dialect.name == "postgresql":
        try:
            with conn.begin_nested():
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except sa.exc.DBAPIError:
            return  # without pg_trgm the names are scanned per org: still small
        conn.exec_driver_sql(
            "CREATE INDEX ix_history_shots_key_trgm ON history_shots USING gin (shot_key gin_trgm_ops)"
        )


def downgrade() -> None:
    op.drop_table("history_shots")
    op.drop_index("ix_transactions_org_shot_at_id", "transactions")
    op.drop_index("ix_transactions_org_kind_at_id", "transactions")
    op.drop_index("ix_transactions_org_tier_at_id", "transactions")
