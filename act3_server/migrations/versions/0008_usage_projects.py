"""usage by project: the job's project in usage_days

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:30:00

Jobs carry a project since 0006, but the charges wrote `usage_days.project` as '' until now. A
`usage_days` row names its job by number (`job_id`, 0 for none), so each row of a job takes that
job's project. No two rows can meet: they differ in `job_id` or in another key already, since
every row had the same project ('').
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE usage_days SET project = COALESCE((SELECT jobs.project FROM jobs"
        " WHERE jobs.org_id = usage_days.org_id AND jobs.number = usage_days.job_id), '')"
        " WHERE usage_days.job_id <> 0 AND usage_days.project = ''"
    )


def downgrade() -> None:
    op.execute("UPDATE usage_days SET project = '' WHERE project <> ''")
