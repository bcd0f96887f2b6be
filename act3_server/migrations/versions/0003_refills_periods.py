"""refills: how many identical billing periods one row covers

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 12:00:00

A dev clock that jumps decades passes hundreds of billing dates at once. Once the rolled-over bank
is at its cap and nothing is spent, those periods are identical (the whole allocation expires and
is refilled), so the ledger records them as one row: `period_start` is the last billing date of
the run and `periods` how many it covers (1 for every ordinary refill).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refills") as batch:
        batch.add_column(sa.Column("periods", sa.Integer(), nullable=False, server_default=sa.text("1")))


def downgrade() -> None:
    with op.batch_alter_table("refills") as batch:
        batch.drop_column("periods")
