"""Launch-day kill switches, shared through the database so every worker and receiver on
every machine obeys within one poll, with no restart (Numzy runbook §12).

- `processing`: the receiver still verifies, stores and acknowledges every delivery, but no
  worker (nor the receiver's inline processing) handles stored events; they wait in the
  backlog and are drained in Stripe's order, exactly once, on resume.
- `reconcile`: the cron records a skipped run instead of running; an apply run (CLI, page)
  is refused naming who paused it and why; a dry-run stays allowed.

Each switch is one `app_settings` row; pausing needs a reason; who, when and why are
stored and every change (and every refusal) is audited.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from db.models import AppSetting
from db.models.base import utcnow
from db.repositories import backlog as backlog_rows
from db.repositories import settings as app_settings
from db.session import UnitOfWork
from services.audit import privileged, record
from services.config import Settings
from services.errors import ConsoleError

SwitchName = Literal["processing", "reconcile"]
SWITCHES: tuple[SwitchName, ...] = ("processing", "reconcile")
TITLES = {"processing": "Event processing", "reconcile": "Automated downgrades (reconcile)"}
MIN_REASON_CHARS = 5
MAX_REASON_CHARS = 500
# Statuses of a verified, stored event that no handler has finished with yet.
BACKLOG_STATUSES = ("pending", "failed", "processing")


class SwitchError(ConsoleError):
    """A switch change was refused; the message is safe to show."""


class Paused(SwitchError):
    """An action is held by a kill switch; names who paused it and why."""

    def __init__(self, state: SwitchState) -> None:
        super().__init__(f"{TITLES[state.name]} is paused by {state.by} since {state.since_text} "
                         f"(reason: {state.reason}). Resume it first: billing-ops resume {state.name}.")
        self.state = state


@dataclass(frozen=True)
class SwitchState:
    name: SwitchName
    paused: bool
    by: str | None = None
    reason: str | None = None
    since: datetime | None = None

    @property
    def since_text(self) -> str:
        return self.since.strftime("%Y-%m-%d %H:%M UTC") if self.since else "-"

    def to_json(self) -> dict[str, Any]:
        return {"paused": self.paused, "by": self.by, "reason": self.reason,
                "since": self.since.isoformat(timespec="seconds") if self.since else None}


def _key(name: str) -> str:
    return f"switch:{name}"


def _check_name(name: str) -> SwitchName:
    if name not in SWITCHES:
        raise SwitchError(f"Unknown switch {name!r}: use {' or '.join(SWITCHES)}.")
    return name


def _state_from(name: SwitchName, row: AppSetting | None) -> SwitchState:
    value = row.value if row is not None else {}
    if not value.get("paused"):
        return SwitchState(name, False)
    since = value.get("since")
    return SwitchState(name, True, value.get("by"), value.get("reason"),
                       datetime.fromisoformat(since) if since else None)


def switch_state(uow: UnitOfWork, name: str) -> SwitchState:
    """One primary-key read; cheap enough for every worker poll."""
    checked = _check_name(name)
    with uow:
        return _state_from(checked, app_settings.get(uow, _key(checked)))


def all_states(uow: UnitOfWork) -> dict[str, SwitchState]:
    with uow:
        rows = app_settings.many(uow, [_key(n) for n in SWITCHES])
        return {name: _state_from(name, rows.get(_key(name))) for name in SWITCHES}


def backlog(uow: UnitOfWork, *, now: datetime | None = None) -> dict[str, Any]:
    """Verified events stored and not yet processed, and how old the oldest one is."""
    moment = now or utcnow()
    with uow:
        count, oldest = backlog_rows.count_and_oldest(uow, BACKLOG_STATUSES)
    if oldest is not None and oldest.tzinfo is None:  # min() keeps the column's type; be safe on old drivers
        oldest = oldest.replace(tzinfo=UTC)
    age = round((moment - oldest).total_seconds(), 1) if oldest is not None else None
    return {"events": int(count), "oldest_age_seconds": age}


def status(uow_factory: Any) -> dict[str, Any]:
    """`billing-ops status --json`: both switches and the backlog."""
    states = all_states(uow_factory())
    return {**{name: state.to_json() for name, state in states.items()}, "backlog": backlog(uow_factory())}


def _set_switch(name: str, *, paused: bool, reason: str | None, actor: str, uow: UnitOfWork) -> SwitchState:
    """Pause (reason required) or resume one switch; audited, refusals included."""
    checked = _check_name(name)
    written = (reason or "").strip()
    action = "switch.pause" if paused else "switch.resume"
    with uow:
        row = app_settings.get(uow, _key(checked))
        before = _state_from(checked, row)
        problem = None
        if paused and len(written) < MIN_REASON_CHARS:
            problem = f"Pausing {checked} needs a reason (at least {MIN_REASON_CHARS} characters)."
        elif paused and before.paused:
            problem = f"{TITLES[checked]} is already paused by {before.by} since {before.since_text}."
        elif not paused and not before.paused:
            problem = f"{TITLES[checked]} is not paused."
        if problem:
            record(uow, actor=actor, action=action, result="refused", target=checked, error=problem)
            uow.commit()
            raise SwitchError(problem)
        moment = utcnow()
        value: dict[str, Any] = ({"paused": True, "by": actor, "reason": written[:MAX_REASON_CHARS],
                                  "since": moment.isoformat()} if paused else {"paused": False})
        if row is None:
            row = app_settings.add(uow, _key(checked), value, updated_by=actor)
        else:
            row.value = value
            row.updated_by = actor
        details: dict[str, Any] = {"switch": checked, "reason": written or None}
        if not paused:
            details["was_paused_by"] = before.by
            details["paused_for_seconds"] = round((moment - before.since).total_seconds()) if before.since else None
        record(uow, actor=actor, action=action, result="ok", target=checked, details=details)
        uow.commit()
        return _state_from(checked, row)


@privileged("switch.pause")
def pause_switch(name: str, *, reason: str, actor: str, settings: Settings, uow: UnitOfWork) -> SwitchState:
    """The console's Pause button (admins only, after a confirmation), or
    `billing-ops pause` (actor=SystemCaller)."""
    return _set_switch(name, paused=True, reason=reason, actor=actor, uow=uow)


@privileged("switch.resume")
def resume_switch(name: str, *, actor: str, settings: Settings, uow: UnitOfWork) -> SwitchState:
    """The console's Resume button (admins only, after a confirmation), or
    `billing-ops resume` (actor=SystemCaller)."""
    return _set_switch(name, paused=False, reason=None, actor=actor, uow=uow)


def refuse_if_paused(uow: UnitOfWork, name: str, *, actor: str, action: str) -> None:
    """Raise Paused (after an audited refusal) when the switch is on."""
    state = switch_state(uow, name)
    if state.paused:
        with uow:
            record(uow, actor=actor, action=action, result="refused", target=name,
                   error=f"paused by {state.by}: {state.reason}", details={"switch": name})
            uow.commit()
        raise Paused(state)


def long_paused(uow: UnitOfWork, *, after: timedelta, now: datetime | None = None) -> list[SwitchState]:
    """Switches on for longer than `after` (the alert's threshold)."""
    moment = now or utcnow()
    return [s for s in all_states(uow).values() if s.paused and s.since is not None and moment - s.since >= after]


def states_as_rows(states: dict[str, SwitchState]) -> list[dict[str, Any]]:
    return [{"switch": TITLES[name], **asdict(state)} for name, state in states.items()]
