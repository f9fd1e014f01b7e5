"""Wiring: settings, the DB engine, the Stripe gateway and the clock, built once per process."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from db.session import UnitOfWork, get_engine
from services.config import Settings, load_settings
from services.refusal_audit import RefusalAudit
from services.stripe_gateway import StripeGateway


def utc_now() -> datetime:
    """The wall clock as an aware UTC datetime (the default ``Runtime.clock``)."""
    return datetime.now(UTC)


@dataclass
class Runtime:
    """What a service needs from the process: settings, a unit-of-work factory, the gateway, a clock.

    ``clock`` returns an aware UTC datetime; tests pass a fixed one.
    """

    settings: Settings
    clock: Callable[[], datetime] = utc_now
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = get_engine(self.settings.database_url)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine, audit_key=self.settings.audit_key_bytes)

    @functools.cached_property
    def gateway(self) -> StripeGateway:
        return StripeGateway(self.settings)

    @functools.cached_property
    def refusal_audit(self) -> RefusalAudit:
        """Refusals of outside requests, audited without a row per request (one per process)."""
        return RefusalAudit(self.uow)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(load_settings())
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Tests and the demo install their own runtime."""
    global _runtime
    _runtime = runtime
