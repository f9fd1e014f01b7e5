"""The disputes and EFW pages' reads, cached briefly so a rerun (a click, a widget change) does
not read them again: the queues and their tiles, the filter choices, the charts, and the charge
as Stripe has it now. Keyed by database (or Stripe account) so tests and environments never
share a result; every page action clears them (`clear`), so what an action changed shows at
once, and a webhook's change shows within the TTL.

`later` (billing-DB reads, on PostgreSQL) and `from_stripe` (live Stripe reads) start a read on a
small thread pool and return its future, so a page can start the reads it shows further down
(the charts, the funnel) and the live Stripe read before it needs them: their database and
network waits overlap the page's own work instead of adding up. The thread runs with the
session's script context, so the reads go through the same caches."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from app_pages._shared import runtime
from db.models.base import utcnow
from services import dispute_analytics, dispute_queue, efw_funnel
from services import fraud_warnings as efw

QUEUE_TTL_SECONDS = 15  # the queues and their tiles
CHART_TTL_SECONDS = 60  # filter choices, monitoring warnings, the dispute-rate chart, the funnel
LIVE_TTL_SECONDS = 30  # a charge read live from Stripe
P = ParamSpec("P")
T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="queue-reads")


def later(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Start the billing-DB read `read` now on the pool (with this session's script context); its
    result when asked. On SQLite it runs here and now: every transaction there begins IMMEDIATE
    (db/session.py), so reads on two connections would wait on each other's lock."""
    if _database().startswith("sqlite"):
        done: Future[T] = Future()
        done.set_result(read(*args, **kwargs))
        return done
    return from_stripe(read, *args, **kwargs)


def from_stripe(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Start `read`, which does not touch the billing DB (a live Stripe read), on the pool now."""
    context = get_script_run_ctx(suppress_warning=True)

    def run() -> T:
        add_script_run_ctx(threading.current_thread(), context)
        return read(*args, **kwargs)

    return _POOL.submit(run)


def _database() -> str:
    return runtime().settings.database_url


def _minute() -> datetime:
    """Now, to the next whole minute: reads of a period ending now share one cached result."""
    return utcnow().replace(second=0, microsecond=0) + timedelta(minutes=1)


@st.cache_data(ttl=QUEUE_TTL_SECONDS, show_spinner=False)
def _dispute_queue(database_url: str, flt: dispute_queue.DisputeFilter) -> dispute_queue.DisputeQueue:
    return dispute_queue.list_queue(runtime().uow(), flt)


@st.cache_data(ttl=CHART_TTL_SECONDS, show_spinner=False)
def _dispute_reasons(database_url: str) -> list[str]:
    return dispute_queue.reasons(runtime().uow())


@st.cache_data(ttl=CHART_TTL_SECONDS, show_spinner=False)
def _programme_warnings(database_url: str, now: datetime) -> list[str]:
    return dispute_analytics.compute_warnings(runtime().uow(), now=now)


@st.cache_data(ttl=CHART_TTL_SECONDS, show_spinner=False)
def _dispute_rates(database_url: str, now: datetime, days: int) -> list[dict[str, Any]]:
    return dispute_queue.dispute_rate_series(runtime().uow(), days=days, now=now)


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def _live_charge(account: str, charge_id: str) -> dispute_queue.LiveCharge:
    return dispute_queue.read_live_charge(runtime().gateway, charge_id)


@st.cache_data(ttl=QUEUE_TTL_SECONDS, show_spinner=False)
def _efw_queue(database_url: str, flt: efw.EfwFilter) -> efw.EfwQueue:
    return efw.list_queue(runtime().uow(), flt)


@st.cache_data(ttl=CHART_TTL_SECONDS, show_spinner=False)
def _fraud_types(database_url: str) -> list[str]:
    return efw.fraud_types(runtime().uow())


@st.cache_data(ttl=CHART_TTL_SECONDS, show_spinner=False)
def _funnel(database_url: str, since: datetime, until: datetime) -> efw_funnel.Funnel:
    return efw_funnel.funnel(runtime().uow(), since=since, until=until)


def dispute_queue_page(flt: dispute_queue.DisputeFilter) -> dispute_queue.DisputeQueue:
    return _dispute_queue(_database(), flt)


def dispute_reasons() -> list[str]:
    return _dispute_reasons(_database())


def programme_warnings() -> list[str]:
    return _programme_warnings(_database(), _minute())


def dispute_rates(days: int) -> list[dict[str, Any]]:
    return _dispute_rates(_database(), _minute(), days)


def live_charge(charge_id: str) -> dispute_queue.LiveCharge:
    """The charge as Stripe has it, read at most once per LIVE_TTL_SECONDS per charge."""
    settings = runtime().settings
    account = f"{settings.database_url}|{settings.stripe_mode}|{settings.stripe_api_base or 'api.stripe.com'}"
    return _live_charge(account, charge_id)


def efw_queue_page(flt: efw.EfwFilter) -> efw.EfwQueue:
    return _efw_queue(_database(), flt)


def fraud_types() -> list[str]:
    return _fraud_types(_database())


def funnel(days: int) -> efw_funnel.Funnel:
    until = _minute()
    return _funnel(_database(), until - timedelta(days=days), until)


def clear() -> None:
    """After a page action: the next render reads everything again."""
    for cached in (_dispute_queue, _dispute_reasons, _programme_warnings, _dispute_rates, _live_charge, _efw_queue,
                   _fraud_types, _funnel):
        cached.clear()
