"""numbers per organisation: jobs, purchases and events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:00:00

Job ids, purchase ids and event sequence numbers were global sequences, so one organisation could
read the others' volume from the gaps between its own numbers. Each is now numbered per
organisation from counters on the org's account row (`last_job_number`, `last_purchase_number`,
`last_event_seq`), bumped under the same row lock that already orders every change of the org:

- `jobs.number` and `purchases.number` are the ids the API shows (unique per org); the `id`
  columns stay as internal keys (shots, the runner's claims).
- `events.seq` itself becomes per org: the primary key is now `(org_id, seq)`.

Existing rows keep the numbers they had (number = id, seq unchanged), and each counter starts at
the org's highest, so every id a client already holds still names the same thing, an add-on's
`after=` keeps working across the upgrade, and new numbers continue from there without gaps.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for column in ("last_job_number", "last_purchase_number", "last_event_seq"):
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    op.execute(
        "UPDATE accounts SET"
        " last_job_number = COALESCE((SELECT max(id) FROM jobs WHERE jobs.org_id = accounts.org_id), 0),"
        " last_purchase_number = COALESCE((SELECT max(id) FROM purchases WHERE purchases.org_id = accounts.org_id), 0),"
        " last_event_seq = COALESCE((SELECT max(seq) FROM events WHERE events.org_id = accounts.org_id), 0)"
    )

    for table in ("jobs", "purchases"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("number", sa.Integer(), nullable=True))
        op.execute(f"UPDATE {table} SET number = id")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("number", existing_type=sa.Integer(), nullable=False)
            batch.create_unique_constraint(f"uq_{table}_org_number", ["org_id", "number"])
    op.drop_index("ix_jobs_org_id_id", "jobs")

    conn = op.get_bind()
    op.drop_index("ix_events_org_seq", "events")
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE events DROP CONSTRAINT events_pkey")
        op.execute("ALTER TABLE events ALTER COLUMN seq DROP DEFAULT")
        op.execute("DROP SEQUENCE IF EXISTS events_seq_seq")
        op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (org_id, seq)")
    else:
        # SQLite cannot change a primary key in place: copy into the new shape.
        op.create_table(
            "events_new",
            sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("type", sa.String(length=32), nullable=False),
            sa.Column("at", sa.DateTime(), nullable=False),
            sa.Column("data", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("org_id", "seq", name="events_pkey"),
        )
        op.execute("INSERT INTO events_new (org_id, seq, type, at, data) SELECT org_id, seq, type, at, data FROM events")
        op.drop_table("events")
        op.rename_table("events_new", "events")


def downgrade() -> None:
    raise NotImplementedError("numbers per organisation cannot be made global again")
