"""Webhook delivery log: which signing secret verified an event, and "mark resolved"

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04 18:15:00

`signed_with` holds fingerprints of the configured secrets that verified the first delivery
(for the log and the guided secret roll); `resolved_at`, `resolved_by` and `resolution_reason`
record who closed a poison event by hand and why (status `resolved`, never retried).
The single-column indexes on type, object_id and received_at become (…, received_at, id), the
log's newest-first order, so a filtered page is read from an index range instead of sorted.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models.base

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index replaced, its replacement, the replacement's columns)
INDEXES = (
    ('ix_stripe_events_type', 'ix_stripe_events_type_received_at', ['type', 'received_at', 'id']),
    ('ix_stripe_events_object_id', 'ix_stripe_events_object_id_received_at', ['object_id', 'received_at', 'id']),
    ('ix_stripe_events_received_at', 'ix_stripe_events_received_at_id', ['received_at', 'id']),
)


def upgrade() -> None:
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_with', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', db.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('resolution_reason', sa.Text(), nullable=True))
        for old, new, columns in INDEXES:
            batch_op.drop_index(old)
            batch_op.create_index(new, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        for old, new, columns in INDEXES:
            batch_op.drop_index(new)
            batch_op.create_index(old, [columns[0]], unique=False)
        batch_op.drop_column('resolution_reason')
        batch_op.drop_column('resolved_by')
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('signed_with')
