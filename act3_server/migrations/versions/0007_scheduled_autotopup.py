"""scheduled jobs and auto top-up

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 14:00:00

- `jobs.status` may be `scheduled`: a job deferred to the next billing period, which holds nothing
  until the refill of that period starts it (act3_server/schedule.py).
- `auto_top_up`: the owner's setting (threshold, pack, cap in cents per billing period, who set it
  and when); `accounts.auto_top_up_below` repeats the threshold while it is on, so the charge path
  sees it in the account row it already locks.
- `auto_top_ups`: one row per purchase auto top-up made, unique per (org, crossing of the
  threshold), and `transactions.auto` marks its history item.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('queued', 'processing', 'paused', 'completed', 'failed', 'canceled')"
NEW_STATUSES = "status IN ('scheduled', 'queued', 'processing', 'paused', 'completed', 'failed', 'canceled')"


def _job_statuses(check: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs DROP CONSTRAINT ck_jobs_status")
        op.execute(f"ALTER TABLE jobs ADD CONSTRAINT ck_jobs_status CHECK ({check})")
        return
    # SQLite changes a CHECK only by copying the table, and shots point at jobs: a copy inside this
    # transaction trips the foreign keys (they cannot be switched off in one). Widening the list of
    # allowed values changes nothing stored, so the table's SQL is edited in place, as SQLite's
    # ALTER TABLE documentation describes for such changes, and the schema version bumped so every
    # connection reads it again.
    conn = op.get_bind()
    before = str(conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").scalar())
    old = NEW_STATUSES if check == OLD_STATUSES else OLD_STATUSES
    if old not in before:
        raise RuntimeError("jobs' status CHECK is not the one this migration knows; not changing it")
    version = int(conn.exec_driver_sql("PRAGMA schema_version").scalar() or 0)
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'jobs'", (before.replace(old, check),)
    )
    conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _job_statuses(NEW_STATUSES)
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("auto_top_up_below", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("auto", sa.Boolean(), nullable=True))
    op.create_table(
        "auto_top_up",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("below", sa.BigInteger(), nullable=False),
        sa.Column("pack_id", sa.String(length=32), nullable=False),
        sa.Column("max_per_period_cents", sa.BigInteger(), nullable=False),
        sa.Column("set_by_member_id", sa.Integer(), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("below >= 0", name="ck_auto_top_up_below"),
        sa.CheckConstraint("max_per_period_cents >= 0", name="ck_auto_top_up_max"),
        sa.PrimaryKeyConstraint("org_id"),
    )
    op.create_table(
        "auto_top_ups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("crossing", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("purchase_number", sa.Integer(), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "crossing", name="uq_auto_top_ups_org_crossing"),
    )
    op.create_index("ix_auto_top_ups_org_period", "auto_top_ups", ["org_id", "period_start"])


def downgrade() -> None:
    op.drop_index("ix_auto_top_ups_org_period", "auto_top_ups")
    op.drop_table("auto_top_ups")
    op.drop_table("auto_top_up")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("auto")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("auto_top_up_below")
    op.execute("UPDATE jobs SET status = 'canceled' WHERE status = 'scheduled'")
    _job_statuses(OLD_STATUSES)
