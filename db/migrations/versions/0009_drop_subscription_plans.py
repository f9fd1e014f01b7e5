"""Drop the unused subscription_plans table

Revision ID: 0009
Revises: 0003
Create Date: 2026-12-04 18:30:00

The console never read or wrote it: plans and their prices come from the settings' price
mapping (STRIPE_PLAN_PRICE_MAPPING_*), and the runbook's SubscriptionPlan rows belong to the
product backend's database, which the go-live checklist covers as a manual item. The
downgrade recreates the empty table as 0001 made it.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('subscription_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_plans_stripe_price_id'))
    op.drop_table('subscription_plans')


def downgrade() -> None:
    op.create_table('subscription_plans',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('plan', sa.String(length=64), nullable=False),
    sa.Column('interval', sa.String(length=16), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('stripe_price_id', sa.String(length=255), nullable=False),
    sa.Column('unit_amount', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('rank', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription_plans')),
    sa.UniqueConstraint('plan', 'interval', 'mode', name=op.f('uq_subscription_plans_plan'))
    )
    with op.batch_alter_table('subscription_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_plans_stripe_price_id'), ['stripe_price_id'], unique=False)
