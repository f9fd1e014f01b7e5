"""Backfill from the Events API: pages of 100, several requests in flight within the rate
budget, each page stored with one multi-row insert, resumable from where it stopped.

Stripe lists events newest first and pages backwards with `starting_after`, so one cursor is
one request at a time. To keep several requests in flight the range is split into `created`
windows (`created[gte]` / `created[lt]`), each paged with its own cursor: a window whose page
says `has_more` continues below its last event, and while a fetch thread is idle the rest of
it is halved (the older half without a cursor, the newer half keeps it). A split costs at most
one short page, so the request count stays close to events / 100.

The open windows are the sync's progress. They are written to `app_settings` in the same
transaction as the page they follow, so a sync stopped at any point (a crash, Ctrl-C, Stripe
unreachable) continues with exactly the windows not yet stored: no stored page is fetched
again and no event is stored twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete

from db.models import AppSetting
from db.session import UnitOfWork, insert_ignoring_conflicts
from services.observability import scrub_text_and_emails
from services.runtime import Runtime
from services.webhooks import LIVEMODE_MISMATCH, SignatureError, check_event, livemode_matches, store_events

PROGRESS_KEY = "sync:events"
# Requests in flight: at ~50-150 ms per page this fills the test-mode budget (20 req/s) with
# room for slow pages; the gateway's shared limiter, not this number, caps the rate.
FETCH_THREADS = 4


@dataclass
class Window:
    """Events with `lo <= created < hi` (no upper bound when `hi` is None) older, in Stripe's
    newest-first order, than the event `after` (the whole window when None)."""

    lo: int
    hi: int | None = None
    after: str | None = None

    def params(self) -> dict[str, Any]:
        created: dict[str, int] = {"gte": self.lo}
        if self.hi is not None:
            created["lt"] = self.hi
        return {"created": created, **({"starting_after": self.after} if self.after else {})}

    def to_json(self) -> list[Any]:
        return [self.lo, self.hi, self.after]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> Window:
        return cls(int(value[0]), None if value[1] is None else int(value[1]), value[2])


@dataclass
class BackfillProgress:
    """What the progress bar shows: events fetched, their rate, the share of the time range done."""

    fetched: int = 0
    stored: int = 0
    duplicate: int = 0
    ignored: int = 0
    failed: int = 0
    pages: int = 0
    seconds: float = 0.0
    covered: float = 0.0  # 0..1 of the seconds in the range no open window still holds
    resumed: bool = False
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.fetched / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.covered <= 0 or self.seconds <= 0:
            return None
        return self.seconds * (1 - self.covered) / self.covered

    def outcomes(self) -> dict[str, int]:
        return {"stored": self.stored, "duplicate": self.duplicate, "ignored": self.ignored, "failed": self.failed,
                "fetched": self.fetched, "pages": self.pages}


def load_progress(runtime: Runtime) -> dict[str, Any] | None:
    with runtime.uow() as uow:
        row = uow.session.get(AppSetting, PROGRESS_KEY)
        return dict(row.value) if row is not None else None


def save_progress(uow: UnitOfWork, value: dict[str, Any]) -> None:
    session = uow.session
    row = session.get(AppSetting, PROGRESS_KEY)
    if row is None:
        session.execute(insert_ignoring_conflicts(session, AppSetting).values(
            key=PROGRESS_KEY, value=value, updated_by="billing-ops sync"))
    else:
        row.value = value


def clear_progress(runtime: Runtime) -> None:
    with runtime.uow() as uow:
        uow.session.execute(delete(AppSetting).where(AppSetting.key == PROGRESS_KEY))
        uow.commit()


def row_error(error: Exception) -> str:
    """A short, safe reason for a row that could not be stored: the driver's first line (a
    PostgreSQL DETAIL line can quote the value, so it is left out), secrets and emails scrubbed."""
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause).strip().splitlines() or [""])[0]
    reason = getattr(error, "reason", None) or first_line
    return scrub_text_and_emails(f"{cause.__class__.__name__}: {reason}")[:200]


def _next_windows(window: Window, events: list[dict[str, Any]], has_more: bool, *, split: bool) -> list[Window]:
    """What is left of `window` after one page: nothing, the rest below its last event, or that
    rest halved by `created` when a fetch thread would otherwise sit idle."""
    if not has_more or not events:
        return []
    last = events[-1]
    rest = Window(window.lo, int(last["created"]) + 1, str(last["id"]))
    if not split or rest.hi is None or rest.hi - rest.lo < 2:
        return [rest]
    middle = (rest.lo + rest.hi) // 2  # <= last["created"], so the cursor stays inside its half
    return [Window(middle, rest.hi, rest.after), Window(rest.lo, middle, None)]


class EventBackfill:
    """One run over the Events API; `run()` returns the progress (outcome counts included)."""

    def __init__(self, runtime: Runtime, state: dict[str, Any], *, threads: int = FETCH_THREADS,
                 on_page: Callable[[BackfillProgress], None] = lambda _p: None) -> None:
        self.runtime = runtime
        self.state = state
        self.threads = max(1, threads)
        self.on_page = on_page
        self.progress = BackfillProgress(resumed=bool(state.get("pages")))
        self.progress.fetched = int(state.get("fetched", 0))
        self.progress.stored = int(state.get("stored", 0))
        self.progress.ignored = int(state.get("ignored", 0))
        self._span = max(1, int(state["until_ts"]) - int(state["since_ts"]))

    def _covered(self, windows: list[Window]) -> float:
        until = int(self.state["until_ts"])
        left = sum(max(0, min(w.hi if w.hi is not None else until, until) - w.lo) for w in windows)
        return max(0.0, min(1.0, 1 - left / self._span))

    def _store(self, events: list[dict[str, Any]], windows: list[Window]) -> None:
        """The page and the windows still open, in one transaction (see the module docstring)."""
        accepted: list[dict[str, Any]] = []
        for event in events:
            try:
                check_event(event)
                if not livemode_matches(event, self.runtime.settings):
                    raise SignatureError(LIVEMODE_MISMATCH)
                accepted.append(event)
            except Exception as error:  # one bad event must not stop the backfill
                self.progress.failed += 1
                self.progress.failures.append(
                    {"kind": "events", "id": str(event.get("id"))[:255], "error": row_error(error)})
        self.progress.fetched += len(events)
        self.progress.pages += 1
        self.state.update(windows=[w.to_json() for w in windows], fetched=self.progress.fetched,
                          pages=int(self.state.get("pages", 0)) + 1)
        with self.runtime.engine.connect() as connection, connection.begin():
            # The session joins the connection's transaction, so store_events' commit is not the
            # end of it: the page and the progress commit together when this block ends.
            unit = UnitOfWork(connection, audit_key=self.runtime.settings.audit_key_bytes)
            outcomes = store_events(self.runtime, accepted, source="sync", uow=unit) if accepted else []
            for outcome in outcomes:
                setattr(self.progress, outcome, getattr(self.progress, outcome) + 1)
            self.state.update(stored=self.progress.stored, ignored=self.progress.ignored)
            with unit:
                save_progress(unit, dict(self.state))
                unit.commit()

    def run(self) -> BackfillProgress:
        started = time.monotonic()
        pending = [Window.from_json(w) for w in self.state["windows"]]
        in_flight: dict[Future[tuple[list[dict[str, Any]], bool]], Window] = {}
        gateway = self.runtime.gateway
        with ThreadPoolExecutor(self.threads, thread_name_prefix="sync-fetch") as pool:
            def submit() -> None:
                while pending and len(in_flight) < self.threads:
                    window = pending.pop()
                    in_flight[pool.submit(gateway.list_events_page, window.params())] = window

            try:
                submit()
                while in_flight:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        window = in_flight.pop(future)
                        events, has_more = future.result()
                        idle = len(pending) + len(in_flight) + 1 < self.threads
                        pending.extend(_next_windows(window, events, has_more, split=idle))
                        submit()  # the next pages are on their way while this one is stored
                        self._store(events, [*pending, *in_flight.values()])
                        self.progress.seconds = time.monotonic() - started
                        self.progress.covered = self._covered([*pending, *in_flight.values()])
                        self.on_page(self.progress)
            finally:
                for future in in_flight:  # a failed page stops the run; its progress is stored
                    future.cancel()
        self.progress.seconds = time.monotonic() - started
        self.progress.covered = 1.0
        return self.progress
