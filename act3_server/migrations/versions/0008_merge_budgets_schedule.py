"""join the two heads: budgets and caps (0006), scheduled jobs and auto top-up (0007)

Revision ID: 0008
Revises: 0006, 0007
Create Date: 2026-11-30 14:20:00

Both grew from 0004 at once; neither depends on the other, so this only makes one head again.
"""

revision = "0008"
down_revision = ("0006", "0007")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
