"""Webhook delivery log: which signing secret verified an event, and "mark resolved"

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04 18:15:00

`signed_with` holds fingerprints of the configured secrets that verified the first delivery
(for the log and the guided secret roll); `resolved_at`, `resolved_by` and `resolution_reason`
record who closed a poison event by hand and why (status `resolved`, never retried).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models.base

revision: str = '0005'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_with', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', db.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('resolution_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_column('resolution_reason')
        batch_op.drop_column('resolved_by')
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('signed_with')
