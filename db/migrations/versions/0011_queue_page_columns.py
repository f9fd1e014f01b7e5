"""fraud_warnings: the charge's refunded amount and whether it is disputed, kept on the warning

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 14:05:00

The EFW queue's order (open and actionable by us first) and its tiles (open, actionable, at risk,
resolved by refund, disputed) depend on the warning's charge: its `amount_refunded` and whether a
dispute row names it. Read through a join they cost a charge and a dispute lookup per open warning
(50k at 100k warnings); kept on the warning they are read from one index,
`ix_fraud_warnings_queue_state` (status, created, actionable, charge_disputed,
charge_amount_refunded, currency, amount, charge_id), which replaces 0010's `ix_fraud_warnings_queue`.

The database keeps them, whoever writes (the event handlers, a sync, a fix by hand): triggers on
`charges` (insert, `amount_refunded` or `id` changed, delete), `disputes` (insert, `charge_id`
changed, delete) and `fraud_warnings` (insert, `charge_id` changed) set exactly what the join reads:
`charge_amount_refunded` = the charge's `amount_refunded`, 0 without a charge; `charge_disputed` =
a dispute row has the warning's `charge_id`. SQLite has one writer at a time. On PostgreSQL a new
warning and a new dispute first lock their charge row (FOR NO KEY UPDATE, as a charge update does),
so concurrent writers of one charge are serialized and the later one sees the earlier once it is
committed; a new charge row refreshes both columns of its warnings. What is left: before the charge
row exists there is nothing to wait on, so a warning stored at the same moment as a dispute on its
charge misses it until the charge row is written, and one stored at the same moment as the charge's
first row misses a refund on it until the charge's amount_refunded next changes. (Transaction
advisory locks would close that too, but take one lock-table slot per charge: a bulk write of 20k
rows ran out of shared memory.) The upgrade fills the columns of the existing rows. A later SQLite
batch migration that rebuilds one of these three tables drops its triggers and must create them
again (`create_triggers`).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the queue's join read, for the warning's own charge (SQLite's triggers, the backfill).
_NEW_STATE = """
    charge_amount_refunded = COALESCE((SELECT c.amount_refunded FROM charges c WHERE c.id = NEW.charge_id), 0),
    charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = NEW.charge_id)"""

SQLITE_TRIGGERS = {
    "trg_fraud_warnings_charge_state_insert": """
        CREATE TRIGGER trg_fraud_warnings_charge_state_insert AFTER INSERT ON fraud_warnings
        BEGIN
            UPDATE fraud_warnings SET""" + _NEW_STATE + """ WHERE id = NEW.id;
        END""",
    "trg_fraud_warnings_charge_state_update": """
        CREATE TRIGGER trg_fraud_warnings_charge_state_update AFTER UPDATE OF charge_id ON fraud_warnings
        WHEN NEW.charge_id IS NOT OLD.charge_id
        BEGIN
            UPDATE fraud_warnings SET""" + _NEW_STATE + """ WHERE id = NEW.id;
        END""",
    "trg_charges_fraud_warnings_insert": """
        CREATE TRIGGER trg_charges_fraud_warnings_insert AFTER INSERT ON charges
        BEGIN
            UPDATE fraud_warnings SET charge_amount_refunded = NEW.amount_refunded,
                   charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = NEW.id)
            WHERE charge_id = NEW.id;
        END""",
    "trg_charges_fraud_warnings_update": """
        CREATE TRIGGER trg_charges_fraud_warnings_update AFTER UPDATE OF id, amount_refunded ON charges
        WHEN NEW.id IS NOT OLD.id OR NEW.amount_refunded IS NOT OLD.amount_refunded
        BEGIN
            UPDATE fraud_warnings SET charge_amount_refunded = 0 WHERE charge_id = OLD.id AND OLD.id IS NOT NEW.id;
            UPDATE fraud_warnings SET charge_amount_refunded = NEW.amount_refunded WHERE charge_id = NEW.id;
        END""",
    "trg_charges_fraud_warnings_delete": """
        CREATE TRIGGER trg_charges_fraud_warnings_delete AFTER DELETE ON charges
        BEGIN
            UPDATE fraud_warnings SET charge_amount_refunded = 0 WHERE charge_id = OLD.id;
        END""",
    "trg_disputes_fraud_warnings_insert": """
        CREATE TRIGGER trg_disputes_fraud_warnings_insert AFTER INSERT ON disputes
        WHEN NEW.charge_id IS NOT NULL
        BEGIN
            UPDATE fraud_warnings SET charge_disputed = 1 WHERE charge_id = NEW.charge_id AND NOT charge_disputed;
        END""",
    "trg_disputes_fraud_warnings_update": """
        CREATE TRIGGER trg_disputes_fraud_warnings_update AFTER UPDATE OF charge_id ON disputes
        WHEN NEW.charge_id IS NOT OLD.charge_id
        BEGIN
            UPDATE fraud_warnings
            SET charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = OLD.charge_id)
            WHERE charge_id = OLD.charge_id;
            UPDATE fraud_warnings SET charge_disputed = 1 WHERE charge_id = NEW.charge_id;
        END""",
    "trg_disputes_fraud_warnings_delete": """
        CREATE TRIGGER trg_disputes_fraud_warnings_delete AFTER DELETE ON disputes
        WHEN OLD.charge_id IS NOT NULL
        BEGIN
            UPDATE fraud_warnings
            SET charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = OLD.charge_id)
            WHERE charge_id = OLD.charge_id;
        END""",
}

POSTGRESQL_FUNCTIONS = {
    # The warning's own row, before it is written: what its charge is now. The charge row is locked
    # first (as a charge update locks it), so a transaction changing the charge or adding a dispute
    # to it at the same time is waited for and then seen, or waits for this one and then sees it.
    "fraud_warnings_charge_state": """
        CREATE FUNCTION fraud_warnings_charge_state() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM 1 FROM charges c WHERE c.id = NEW.charge_id FOR NO KEY UPDATE;
            SELECT COALESCE((SELECT c.amount_refunded FROM charges c WHERE c.id = NEW.charge_id), 0),
                   EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = NEW.charge_id)
              INTO NEW.charge_amount_refunded, NEW.charge_disputed;
            RETURN NEW;
        END $$""",
    # A new charge row also brings its warnings' dispute flag up to date (a warning and a dispute
    # stored before their charge had no charge row to wait on).
    "charges_fraud_warnings": """
        CREATE FUNCTION charges_fraud_warnings() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                IF TG_OP = 'DELETE' OR OLD.id IS DISTINCT FROM NEW.id THEN
                    UPDATE fraud_warnings SET charge_amount_refunded = 0 WHERE charge_id = OLD.id;
                END IF;
            END IF;
            IF TG_OP = 'INSERT' THEN
                UPDATE fraud_warnings SET charge_amount_refunded = NEW.amount_refunded,
                       charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = NEW.id)
                WHERE charge_id = NEW.id;
            ELSIF TG_OP = 'UPDATE' THEN
                UPDATE fraud_warnings SET charge_amount_refunded = NEW.amount_refunded
                WHERE charge_id = NEW.id AND charge_amount_refunded IS DISTINCT FROM NEW.amount_refunded;
            END IF;
            RETURN NULL;
        END $$""",
    "disputes_fraud_warnings": """
        CREATE FUNCTION disputes_fraud_warnings() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                IF OLD.charge_id IS NOT NULL
                   AND (TG_OP = 'DELETE' OR OLD.charge_id IS DISTINCT FROM NEW.charge_id) THEN
                    UPDATE fraud_warnings
                    SET charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = OLD.charge_id)
                    WHERE charge_id = OLD.charge_id;
                END IF;
            END IF;
            IF TG_OP <> 'DELETE' AND NEW.charge_id IS NOT NULL THEN
                PERFORM 1 FROM charges c WHERE c.id = NEW.charge_id FOR NO KEY UPDATE;
                UPDATE fraud_warnings SET charge_disputed = true
                WHERE charge_id = NEW.charge_id AND NOT charge_disputed;
            END IF;
            RETURN NULL;
        END $$""",
}

POSTGRESQL_TRIGGERS = {
    "trg_fraud_warnings_charge_state_insert": """
        CREATE TRIGGER trg_fraud_warnings_charge_state_insert BEFORE INSERT ON fraud_warnings
        FOR EACH ROW EXECUTE FUNCTION fraud_warnings_charge_state()""",
    "trg_fraud_warnings_charge_state_update": """
        CREATE TRIGGER trg_fraud_warnings_charge_state_update BEFORE UPDATE OF charge_id ON fraud_warnings
        FOR EACH ROW WHEN (NEW.charge_id IS DISTINCT FROM OLD.charge_id)
        EXECUTE FUNCTION fraud_warnings_charge_state()""",
    "trg_charges_fraud_warnings": """
        CREATE TRIGGER trg_charges_fraud_warnings
        AFTER INSERT OR DELETE OR UPDATE OF id, amount_refunded ON charges
        FOR EACH ROW EXECUTE FUNCTION charges_fraud_warnings()""",
    "trg_disputes_fraud_warnings": """
        CREATE TRIGGER trg_disputes_fraud_warnings
        AFTER INSERT OR DELETE OR UPDATE OF charge_id ON disputes
        FOR EACH ROW EXECUTE FUNCTION disputes_fraud_warnings()""",
}
_TRIGGER_TABLES = {"trg_fraud_warnings_charge_state_insert": "fraud_warnings",
                   "trg_fraud_warnings_charge_state_update": "fraud_warnings",
                   "trg_charges_fraud_warnings": "charges", "trg_disputes_fraud_warnings": "disputes"}

BACKFILL = """
    UPDATE fraud_warnings SET
    charge_amount_refunded = COALESCE((SELECT c.amount_refunded FROM charges c
                                       WHERE c.id = fraud_warnings.charge_id), 0),
    charge_disputed = EXISTS (SELECT 1 FROM disputes d WHERE d.charge_id = fraud_warnings.charge_id)"""


def create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*POSTGRESQL_FUNCTIONS.values(), *POSTGRESQL_TRIGGERS.values()):
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS.values():
            op.execute(statement)


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table in _TRIGGER_TABLES.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for name in POSTGRESQL_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    with op.batch_alter_table('fraud_warnings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('charge_amount_refunded', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      server_default='0', nullable=False))
        batch_op.add_column(sa.Column('charge_disputed', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(BACKFILL)
    with op.batch_alter_table('fraud_warnings', schema=None) as batch_op:
        batch_op.create_index('ix_fraud_warnings_queue_state',
                              ['status', 'created', 'actionable', 'charge_disputed', 'charge_amount_refunded',
                               'currency', 'amount', 'charge_id'], unique=False)
        batch_op.drop_index('ix_fraud_warnings_queue')
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    with op.batch_alter_table('fraud_warnings', schema=None) as batch_op:
        batch_op.create_index('ix_fraud_warnings_queue',
                              ['status', 'created', 'actionable', 'currency', 'amount', 'charge_id'], unique=False)
        batch_op.drop_index('ix_fraud_warnings_queue_state')
        batch_op.drop_column('charge_disputed')
        batch_op.drop_column('charge_amount_refunded')
