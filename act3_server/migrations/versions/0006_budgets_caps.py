"""project budgets and member caps

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:00:00

- `budgets`: a project's budget per org (credits, per billing period or in total, and what a job
  that would cross it gets: warn, pause or refuse).
- `jobs.project` (the project a job is charged to), `jobs.period_start` (the billing period its
  hold was taken in: a job counts against that period's budgets and caps) and `jobs.pause_before`
  (the shot a `pause` budget stops it before); two indexes to sum a project's and a member's jobs.
- `members.cap_credits`: credits a member may hold and spend per billing period (NULL: no cap).
- `accounts.spend_limits`: how many budgets and caps the org has, so the hold's fast path takes
  only orgs with none.

Jobs already there count in the period their org is in now if they were created in it (they
could have been nothing else), older ones in no billing period (only in `total` budgets, and they
have no project).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "project"),
        sa.CheckConstraint("credits >= 0", name="ck_budgets_credits"),
        sa.CheckConstraint("period IN ('billing_period', 'total')", name="ck_budgets_period"),
        sa.CheckConstraint("action IN ('warn', 'pause', 'refuse')", name="ck_budgets_action"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("project", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("period_start", sa.Date(), nullable=True))
        batch.add_column(sa.Column("pause_before", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE jobs SET period_start = (SELECT period_start FROM accounts WHERE accounts.org_id = jobs.org_id)"
        " WHERE created_at >= (SELECT period_start FROM accounts WHERE accounts.org_id = jobs.org_id)"
    )
    op.create_index("ix_jobs_org_project_period", "jobs", ["org_id", "project", "period_start"])
    op.create_index("ix_jobs_member_period", "jobs", ["member_id", "period_start"])
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("cap_credits", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("spend_limits", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("spend_limits")
    with op.batch_alter_table("members") as batch:
        batch.drop_column("cap_credits")
    op.drop_index("ix_jobs_member_period", "jobs")
    op.drop_index("ix_jobs_org_project_period", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("pause_before")
        batch.drop_column("period_start")
        batch.drop_column("project")
    op.drop_table("budgets")
