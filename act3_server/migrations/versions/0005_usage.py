"""usage per day, and history rows for shots that ended uncharged

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:20:00

- `usage_days`: charged renders summed per UTC day, tier, engine, member, job and project, written
  in the charge's own transaction. `GET /v1/account/usage` and the forecast's pace read it: summing
  a month of render rows took 56-85 ms on SQLite at 1,000,000 rows of one org (docs/benchmarks.md);
  a month of these is a few thousand rows. Filled here from the render rows already there.
- `usage_shots`: the same per billing period and shot name, for `group_by=shot` over whole billing
  periods (a day-by-day sum per shot name would hold nearly a row per render).
- `transactions.kind` may be 'failed' or 'canceled' (a shot that ended without a charge,
  credits 0), with the reason in the new `transactions.reason`.
"""

from datetime import date

import sqlalchemy as sa
from alembic import op

from act3_credits.core.billing import period_start

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('render', 'purchase', 'refill', 'rollover', 'expiry', 'refund')"
NEW_KINDS = "kind IN ('render', 'purchase', 'refill', 'rollover', 'expiry', 'refund', 'failed', 'canceled')"


def upgrade() -> None:
    op.create_table(
        "usage_days",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("shots", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "day", "tier", "engine", "member", "job_id", "project"),
        sqlite_with_rowid=False,
    )
    day = "date(at)" if op.get_bind().dialect.name == "sqlite" else "CAST(at AS date)"
    op.execute(
        "INSERT INTO usage_days (org_id, day, tier, engine, member, job_id, project, credits, shots, seconds)"
        f" SELECT org_id, {day}, COALESCE(tier, ''), COALESCE(engine, ''), COALESCE(member, ''),"
        " COALESCE(job_id, 0), '', -SUM(credits), COUNT(*), COALESCE(SUM(duration_s), 0)"
        " FROM transactions WHERE kind = 'render'"
        f" GROUP BY org_id, {day}, COALESCE(tier, ''), COALESCE(engine, ''), COALESCE(member, ''), COALESCE(job_id, 0)"
    )
    op.create_table(
        "usage_shots",
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("shot", sa.String(length=200), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("shots", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "period_start", "shot"),
        sqlite_with_rowid=False,
    )
    _fill_usage_shots(day)
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=200), nullable=True))
        batch.drop_constraint("ck_transactions_kind", type_="check")
        batch.create_check_constraint("ck_transactions_kind", NEW_KINDS)


def _fill_usage_shots(day: str) -> None:
    """Each org's renders per billing period and shot name (the period needs the org's billing
    day, whose 29-31 falls on shorter months' last day: worked out in Python, not SQL)."""
    conn = op.get_bind()
    billing_days: dict[int, int] = {
        int(i): int(d) for i, d in conn.execute(sa.text("SELECT id, billing_day FROM orgs"))
    }
    per_day = conn.execute(
        sa.text(
            f"SELECT org_id, {day} AS day, COALESCE(shot, ''), -SUM(credits), COUNT(*), COALESCE(SUM(duration_s), 0)"
            f" FROM transactions WHERE kind = 'render' GROUP BY org_id, {day}, COALESCE(shot, '')"
        )
    )
    sums: dict[tuple[int, date, str], list[int]] = {}
    for org_id, on, shot, credits, shots, seconds in per_day:
        on = on if isinstance(on, date) else date.fromisoformat(str(on)[:10])
        key = (org_id, period_start(on, billing_days[org_id]), shot)
        found = sums.setdefault(key, [0, 0, 0])
        found[0] += int(credits)
        found[1] += int(shots)
        found[2] += int(seconds)
    table = sa.table(
        "usage_shots", *(sa.column(c) for c in ("org_id", "period_start", "shot", "credits", "shots", "seconds"))
    )
    rows = [
        {"org_id": o, "period_start": p, "shot": sh, "credits": v[0], "shots": v[1], "seconds": v[2]}
        for (o, p, sh), v in sums.items()
    ]
    for i in range(0, len(rows), 10_000):
        op.bulk_insert(table, rows[i : i + 10_000])


def downgrade() -> None:
    op.execute("DELETE FROM transactions WHERE kind IN ('failed', 'canceled')")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint("ck_transactions_kind", type_="check")
        batch.create_check_constraint("ck_transactions_kind", OLD_KINDS)
        batch.drop_column("reason")
    op.drop_table("usage_shots")
    op.drop_table("usage_days")
