"""Stripe-fed free text as TEXT: customer name/email/metadata and dispute/EFW emails

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 11:50:00

PostgreSQL refuses a VARCHAR(n) value over n characters, and one such value (a customer
name over 255 characters, a 500-character metadata.user_id) failed the whole batch it was in.
These columns hold customer-controlled text from Stripe with no length we can rely on, so they
become TEXT. Stripe ids stay VARCHAR(255) (Stripe documents ids as at most 255 characters), and
the receiver refuses events whose id, type or object id is longer.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, old VARCHAR length)
WIDENED = (
    ('customers', 'email', 320),
    ('customers', 'name', 255),
    ('customers', 'user_id', 255),
    ('user_subscriptions', 'user_id', 255),
    ('user_subscriptions', 'pending_plan', 64),
    ('disputes', 'customer_email', 320),
    ('fraud_warnings', 'customer_email', 320),
)


def upgrade() -> None:
    for table in dict.fromkeys(t for t, _, _ in WIDENED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for _, column, length in (w for w in WIDENED if w[0] == table):
                batch_op.alter_column(column, existing_type=sa.String(length=length), type_=sa.Text(),
                                      existing_nullable=True)


def downgrade() -> None:
    # Longer values are cut to fit, as a VARCHAR(n) column cannot hold them.
    for table in dict.fromkeys(t for t, _, _ in WIDENED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for _, column, length in (w for w in WIDENED if w[0] == table):
                batch_op.alter_column(column, existing_type=sa.Text(), type_=sa.String(length=length),
                                      existing_nullable=True,
                                      postgresql_using=f'left({column}, {length})')
