"""metric_hourly: the hourly rollup of metric_points the First-24h board reads

Revision ID: 0008
Revises: 0003
Create Date: 2026-12-04 18:30:00

The board summed every point of its window (1M points: 7-day p95 325-884 ms); it now reads one
row per metric, hour, production/test and shard from this table, which services/metric_points.py
keeps up to date in the same transaction as the points it inserts (each process in its own shard,
so concurrent writers do not queue on one row). Existing points are rolled up here (shard 0).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'metric_hourly',
        sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('test', sa.Boolean(), nullable=False),
        sa.Column('shard', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('value', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.PrimaryKeyConstraint('hour', 'name', 'test', 'shard', name=op.f('pk_metric_hourly')),
    )
    # Roll up the points already there: UTC hour, name, the {"test": true} tag (as the board reads it).
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "INSERT INTO metric_hourly (hour, name, test, shard, value)"
            " SELECT date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', name,"
            " COALESCE(CAST(tags ->> 'test' AS BOOLEAN), false), 0, SUM(value) FROM metric_points GROUP BY 1, 2, 3"
        )
    else:
        op.execute(
            "INSERT INTO metric_hourly (hour, name, test, shard, value)"
            " SELECT substr(at, 1, 13) || ':00:00.000000', name, COALESCE(JSON_EXTRACT(tags, '$.\"test\"'), 0) != 0,"
            " 0, SUM(value) FROM metric_points GROUP BY 1, 2, 3"
        )


def downgrade() -> None:
    op.drop_table('metric_hourly')
