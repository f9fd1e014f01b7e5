"""disputes, fraud_warnings, charges: the indexes the queue pages read a page, their tiles and the rates from

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:10:00

The disputes queue reads each status's page in deadline order and its tiles (open, overdue, due
in 24 h / 72 h, amount at risk per currency) from (status, due_by, currency, amount) alone, without
visiting the rows; it replaces (status, due_by), which it covers. The EFW queue reads each run of
its order (open and actionable first, oldest first) from (status, created, ...) in order, instead
of sorting every open warning, and its tiles from the same index (actionable, currency, amount,
charge_id); the funnel reads a period's warnings from (created, status, decided_at, currency,
charge_id, id) alone. The dispute rates beside the queue count succeeded charges per day
and per card brand from (status, created, card_brand) alone.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index('ix_disputes_status_due_by_currency_amount', ['status', 'due_by', 'currency', 'amount'],
                              unique=False)
        batch_op.drop_index('ix_disputes_status_due_by')
    with op.batch_alter_table('fraud_warnings', schema=None) as batch_op:
        batch_op.create_index('ix_fraud_warnings_queue',
                              ['status', 'created', 'actionable', 'currency', 'amount', 'charge_id'], unique=False)
        batch_op.create_index('ix_fraud_warnings_funnel',
                              ['created', 'status', 'decided_at', 'currency', 'charge_id', 'id'], unique=False)
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.create_index('ix_charges_status_created_card_brand', ['status', 'created', 'card_brand'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.drop_index('ix_charges_status_created_card_brand')
    with op.batch_alter_table('fraud_warnings', schema=None) as batch_op:
        batch_op.drop_index('ix_fraud_warnings_funnel')
        batch_op.drop_index('ix_fraud_warnings_queue')
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index('ix_disputes_status_due_by', ['status', 'due_by'], unique=False)
        batch_op.drop_index('ix_disputes_status_due_by_currency_amount')
