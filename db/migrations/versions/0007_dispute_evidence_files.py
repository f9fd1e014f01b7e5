"""Evidence files kept beside the draft, for previews after submission

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-04 18:30:00

Stripe keeps the uploaded evidence files, but reading them back needs a second authenticated
download per file; the console keeps its own copy of each file it uploaded (at most 5 MB,
PDF/JPEG/PNG) so the submitted evidence can be shown with previews.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dispute_evidence_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('dispute_id', sa.String(length=255), nullable=False),
    sa.Column('evidence_field', sa.String(length=64), nullable=False),
    sa.Column('stripe_file_id', sa.String(length=255), nullable=False),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('file_type', sa.String(length=8), nullable=False),
    sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=255), nullable=True),
    sa.Column('uploaded_at', db.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispute_evidence_files')),
    sa.UniqueConstraint('stripe_file_id', name=op.f('uq_dispute_evidence_files_stripe_file_id'))
    )
    with op.batch_alter_table('dispute_evidence_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dispute_evidence_files_dispute_id'), ['dispute_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dispute_evidence_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispute_evidence_files_dispute_id'))
    op.drop_table('dispute_evidence_files')
