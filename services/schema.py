"""Bring a database up to date: the migrations, then the rows the pages read but never write
(the go-live checklist's seed items), so that rendering a page stays a read."""

from __future__ import annotations

from db.migrate import upgrade
from db.session import UnitOfWork
from services.checklist import seed_checklist


def upgrade_and_seed(url: str) -> int:
    """`billing-ops db upgrade`, `billing-ops run` and the demo: migrate to head, then add the
    missing checklist items (by key, never touching edited ones); returns how many were added."""
    upgrade(url)
    return seed_checklist(UnitOfWork(url))
