"""running totals by shot name at some midnights, for usage by shot over long ranges

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 20:30:00

`usage_marks` and `usage_shot_marks` (act3_server/db.py). Nothing is filled here: the billing
thread of `serve` writes each org's marks, oldest first, from its first render on (about 3 s for
two years of 41,000 renders a month on SQLite), and until a range's marks are there usage by shot
reads as it did before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_marks",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("mark", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "mark"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_shot_marks",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("mark", sa.Date(), nullable=False),
        sa.Column("shot", sa.String(length=200), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("shots", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "mark", "shot"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("usage_shot_marks")
    op.drop_table("usage_marks")
