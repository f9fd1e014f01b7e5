"""Refused requests from outside (the console's /auth routes) audited without a row per request.

Every refusal is audited, but a flood must not write one audit row (and one hash-chain lock) per
request. So the first refusal of a kind (action, client, reason) is written at once, as before;
the same refusal again within the window is only counted in memory, and the count is written as
one row (`details.repeats`) when the window closes: by the next refusal of that kind after it, by
a background flush, or at exit. Memory is bounded: past `max_kinds` open windows, new clients
share one "many clients" kind. A count the database refuses is kept for the next flush.
The webhook receiver does the same for its refusals with metric rows (webhooks/rejections.py)."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from db.session import UnitOfWork
from services import audit

logger = logging.getLogger(__name__)

MANY_CLIENTS = "many clients"  # the shared target once max_kinds windows are open
Kind = tuple[str, str, str]  # (action, target, reason)


@dataclass
class _Window:
    opened: float
    repeats: int = 0


class RefusalAudit:
    WINDOW_SECONDS = 60.0
    MAX_KINDS = 1024

    def __init__(self, uow: Callable[[], UnitOfWork], *, window_seconds: float = WINDOW_SECONDS,
                 max_kinds: int = MAX_KINDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._uow = uow
        self._window_seconds = window_seconds
        self._max_kinds = max_kinds
        self._clock = clock
        self._windows: dict[Kind, _Window] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def refuse(self, *, action: str, target: str, reason: str) -> None:
        """Audit one refusal: written now if it opens a window, else counted for the window's row."""
        now = self._clock()
        closed: list[tuple[Kind, _Window]] = []
        with self._lock:
            kind: Kind = (action, target, reason)
            if kind not in self._windows and len(self._windows) >= self._max_kinds:
                kind = (action, MANY_CLIENTS, reason)
            window = self._windows.get(kind)
            if window is not None and now - window.opened < self._window_seconds:
                window.repeats += 1
                return
            if window is not None and window.repeats:
                closed.append((kind, window))
            self._windows[kind] = _Window(opened=now)
            self._start_flusher()
        self._write(closed)
        with self._uow() as uow:
            audit.record(uow, actor="anonymous", action=kind[0], result="denied", target=kind[1],
                         details={"reason": kind[2]})
            uow.commit()

    def flush(self, *, everything: bool = False) -> int:
        """Write the repeat counts of the windows that closed (all of them with `everything`);
        returns how many refusals the rows written cover."""
        now = self._clock()
        with self._lock:
            due = [(kind, w) for kind, w in self._windows.items()
                   if everything or now - w.opened >= self._window_seconds]
            for kind, _ in due:
                del self._windows[kind]
        return self._write([(kind, w) for kind, w in due if w.repeats])

    def _write(self, closed: list[tuple[Kind, _Window]]) -> int:
        if not closed:
            return 0
        with self._flush_lock:
            try:
                with self._uow() as uow:
                    for (action, target, reason), window in closed:
                        audit.record(uow, actor="anonymous", action=action, result="denied", target=target,
                                     details={"reason": reason, "repeats": window.repeats,
                                              "window_seconds": self._window_seconds})
                    uow.commit()
            except Exception as error:  # the DB is busy or down: keep the counts for the next flush
                logger.warning("could not audit %d repeated refusals: %s",
                               sum(w.repeats for _, w in closed), error.__class__.__name__)
                with self._lock:
                    for kind, window in closed:
                        kept = self._windows.setdefault(kind, _Window(opened=window.opened))
                        kept.repeats += window.repeats
                return 0
        return sum(w.repeats for _, w in closed)

    def close(self) -> None:
        """Stop the flusher and write every count still held."""
        self._stop.set()
        self.flush(everything=True)

    def _start_flusher(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._run, name="refusal-audit", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.wait(max(self._window_seconds / 4, 0.05)):
            try:
                self.flush()
            except Exception as error:  # never let the flusher die: the next tick retries
                logger.warning("refusal audit flush failed: %s", error.__class__.__name__)
