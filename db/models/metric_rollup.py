"""The hourly rollup of metric_points that the First-24h board reads (kept up to date by
services/metric_points.py in the same transaction as the points)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base


class MetricHourly(Base):
    """Sum of a metric's point values per UTC hour, production and test (QA / test-clock) apart,
    in a few shards: each writing process adds to its own shard (its pid modulo
    services/metric_rollup.SHARDS), so receivers and workers on one PostgreSQL do not queue on
    one row lock per metric and hour; readers sum the shards."""

    __tablename__ = "metric_hourly"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # True for points tagged {"test": true} (services/metric_points.TEST_TAG).
    test: Mapped[bool] = mapped_column(primary_key=True)
    shard: Mapped[int] = mapped_column(primary_key=True, default=0)
    value: Mapped[int] = mapped_column(default=0)
