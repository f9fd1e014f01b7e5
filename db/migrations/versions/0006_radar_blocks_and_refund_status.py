"""Radar blocks (values the console put on a Radar value list for an EFW) and refund status

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-04 18:02:52

`radar_blocks` holds one row per (warning, item type): the claim that makes concurrent
"refund and block" clicks add one value-list item, and what Undo removes. `customers` and `charges` gain
`metadata_ip` (the purchase IP the app records in metadata.ip, indexed for related payments).
`refunds` gains Stripe's `failure_reason`, who sent the refund from the console, and `stripe_updated` so a
late refund.created never overwrites a newer refund.failed.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models.base

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('radar_blocks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('efw_id', sa.String(length=255), nullable=False),
    sa.Column('charge_id', sa.String(length=255), nullable=True),
    sa.Column('item_type', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('value_list_alias', sa.String(length=255), nullable=False),
    sa.Column('value_list_id', sa.String(length=255), nullable=True),
    sa.Column('item_id', sa.String(length=255), nullable=True),
    sa.Column('created_item', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('created_at', db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('removed_by', sa.String(length=320), nullable=True),
    sa.Column('removed_at', db.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_radar_blocks')),
    sa.UniqueConstraint('efw_id', 'item_type', name=op.f('uq_radar_blocks_efw_id'))
    )
    with op.batch_alter_table('radar_blocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_radar_blocks_efw_id'), ['efw_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_radar_blocks_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_radar_blocks_status'), ['status'], unique=False)

    for table in ('customers', 'charges'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('metadata_ip', sa.String(length=64), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_{table}_metadata_ip'), ['metadata_ip'], unique=False)
        # Filled from the stored Stripe object; services/stripe_mapping.py keeps it current.
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(f"UPDATE {table} SET metadata_ip = raw->'metadata'->>'ip' "
                       f"WHERE length(raw->'metadata'->>'ip') BETWEEN 1 AND 64")
        else:
            op.execute(f"UPDATE {table} SET metadata_ip = json_extract(raw, '$.metadata.ip') "
                       f"WHERE length(json_extract(raw, '$.metadata.ip')) BETWEEN 1 AND 64")

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_reason', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('requested_by', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('stripe_updated', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_column('stripe_updated')
        batch_op.drop_column('requested_by')
        batch_op.drop_column('failure_reason')

    for table in ('charges', 'customers'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_metadata_ip'))
            batch_op.drop_column('metadata_ip')

    with op.batch_alter_table('radar_blocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_radar_blocks_status'))
        batch_op.drop_index(batch_op.f('ix_radar_blocks_item_id'))
        batch_op.drop_index(batch_op.f('ix_radar_blocks_efw_id'))

    op.drop_table('radar_blocks')
