"""Radar blocks: one `radar_blocks` row per (early fraud warning, item type), claimed before the
value-list item is created and moved through adding -> active -> removing -> removed.

Every function takes the open UnitOfWork and never commits (the service owns the transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update

from db.models import RadarBlock
from db.session import UnitOfWork, insert_ignoring_conflicts, rows_affected


def get(uow: UnitOfWork, block_id: int) -> RadarBlock | None:
    return uow.session.get(RadarBlock, block_id)


def of_warning(uow: UnitOfWork, efw_id: str) -> list[RadarBlock]:
    return list(uow.session.execute(
        select(RadarBlock).where(RadarBlock.efw_id == efw_id).order_by(RadarBlock.item_type)).scalars())


def for_item_type(uow: UnitOfWork, efw_id: str, item_type: str) -> RadarBlock:
    """The warning's block row of this item type (it exists once claimed)."""
    return uow.session.execute(select(RadarBlock).where(RadarBlock.efw_id == efw_id,
                                                        RadarBlock.item_type == item_type)).scalar_one()


def insert_claim(uow: UnitOfWork, values: dict[str, Any]) -> bool:
    """A new row for (warning, item type), unless one exists: INSERT ... ON CONFLICT DO NOTHING."""
    return uow.session.execute(
        insert_ignoring_conflicts(uow.session, RadarBlock).values(**values).returning(RadarBlock.id)
    ).first() is not None


def reclaim(uow: UnitOfWork, efw_id: str, item_type: str, *, stale_before: datetime, values: dict[str, Any]) -> bool:
    """Take the existing row again when it was removed or its adding went stale (a request that died)."""
    return bool(rows_affected(uow.session.execute(
        update(RadarBlock).where(
            RadarBlock.efw_id == efw_id, RadarBlock.item_type == item_type,
            or_(RadarBlock.status == "removed",
                and_(RadarBlock.status == "adding", RadarBlock.updated_at < stale_before)))
        .values(attempt=RadarBlock.attempt + 1, **values)
    )))


def set_for_item_type(uow: UnitOfWork, efw_id: str, item_type: str, values: dict[str, Any], *,
                      status: str | None = None) -> None:
    """Update the warning's row of this item type (only while it is `status`, when given)."""
    where = [RadarBlock.efw_id == efw_id, RadarBlock.item_type == item_type]
    if status is not None:
        where.append(RadarBlock.status == status)
    uow.session.execute(update(RadarBlock).where(*where).values(**values))


def claim_removal(uow: UnitOfWork, block_id: int, now: datetime) -> bool:
    """active -> removing, once."""
    return bool(rows_affected(uow.session.execute(
        update(RadarBlock).where(RadarBlock.id == block_id, RadarBlock.status == "active")
        .values(status="removing", updated_at=now))))


def set_block(uow: UnitOfWork, block_id: int, values: dict[str, Any]) -> None:
    uow.session.execute(update(RadarBlock).where(RadarBlock.id == block_id).values(**values))


def lift_item(uow: UnitOfWork, block_id: int, item_id: str | None, values: dict[str, Any]) -> None:
    """This block and every active block pointing at the same value-list item (the same card on
    two warnings): the item is gone, so all of them are."""
    lifted = or_(RadarBlock.id == block_id, and_(RadarBlock.item_id == item_id, RadarBlock.status == "active")) \
        if item_id else RadarBlock.id == block_id
    uow.session.execute(update(RadarBlock).where(lifted).values(**values))
