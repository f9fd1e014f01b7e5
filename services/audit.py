"""Append-only audit log with a hash chain, and the `privileged` guard.

Each row stores the hash of the previous row; `verify_chain` recomputes the
chain and names the first row that was edited, or that follows a deleted one.
Every privileged service function is wrapped by `privileged(...)`, which
checks the actor is an admin and writes a `denied` row when not, so denials
are recorded even though nothing else happens. Code that acts on its own
authority (the CLI run at a shell, a QA-matrix run that was itself authorised)
says so explicitly by passing a `SystemCaller` as the actor.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from db.models import AuditLog
from db.models.base import utcnow
from db.repositories import audit as audit_rows
from db.session import UnitOfWork
from services.auth import AccessDenied, is_admin, normalise_email
from services.config import Settings
from services.observability import scrub_text, scrub_value

GENESIS_HASH = "0" * 64

P = ParamSpec("P")
R = TypeVar("R")


def _canonical(prev_hash: str, row: AuditLog) -> bytes:
    return json.dumps(
        {
            "prev": prev_hash,
            "at": row.at.isoformat(timespec="microseconds"),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "idempotency_key": row.idempotency_key,
            "result": row.result,
            "details": row.details,
            "error": row.error,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()


def _row_digest(prev_hash: str, row: AuditLog, key: bytes | None = None) -> str:
    """SHA-256 of the row, or HMAC-SHA256 with AUDIT_HMAC_KEY: without the key (kept outside
    the DB) nobody can re-hash an edited chain so that it verifies."""
    body = _canonical(prev_hash, row)
    if key:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def record(
    uow: UnitOfWork,
    *,
    actor: str | None,
    action: str,
    result: str,
    target: str | None = None,
    idempotency_key: str | None = None,
    details: dict[str, Any] | None = None,
    error: str | None = None,
) -> AuditLog:
    """Append one row inside the caller's transaction (committed with the action)."""
    audit_rows.lock_chain(uow)
    prev_hash = audit_rows.last_hash(uow) or GENESIS_HASH
    row = AuditLog(
        at=utcnow(),
        actor=(actor or "anonymous")[:320],
        action=action,
        target=target,
        idempotency_key=idempotency_key,
        result=result,
        details=scrub_value(details or {}),
        error=scrub_text(error) if error else None,
        prev_hash=prev_hash,
    )
    row.row_hash = _row_digest(prev_hash, row, getattr(uow, "audit_key", None))
    return audit_rows.add(uow, row)


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    rows_checked: int
    first_broken_id: int | None = None
    problem: str | None = None
    keyed: bool = False  # every row verified with AUDIT_HMAC_KEY
    anchors_checked: int = 0


def chain_head(uow: UnitOfWork, *, at: datetime) -> dict[str, Any]:
    """The chain head to freeze into a snapshot or sign-off record, so deleting the newest
    rows (which no per-row hash can show) is caught: the anchored row must still be there,
    with the same hash and the same number of rows up to it. With a key the anchor is MACed."""
    head_id, head_hash, rows = audit_rows.head(uow)
    anchor: dict[str, Any] = {"head_id": head_id, "head_hash": head_hash, "rows": rows,
                              "at": at.isoformat(timespec="microseconds")}
    key = getattr(uow, "audit_key", None)
    if key:
        anchor["mac"] = _anchor_mac(anchor, key)
    return anchor


def _anchor_mac(anchor: dict[str, Any], key: bytes) -> str:
    body = json.dumps({k: anchor.get(k) for k in ("head_id", "head_hash", "rows", "at")}, sort_keys=True)
    return hmac.new(key, b"audit-anchor:" + body.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Anchor:
    where: str
    head_id: int | None
    head_hash: str | None
    rows: int


def _anchors(uow: UnitOfWork, key: bytes | None) -> tuple[list[_Anchor], str | None]:
    """Every anchor frozen into a metrics snapshot or a sign-off, or a reason one was forged."""
    found: dict[tuple[Any, ...], _Anchor] = {}
    for where, raw, written_at in audit_rows.anchor_sources(uow):
        if not isinstance(raw, dict):
            continue  # written before anchors existed
        if key and not hmac.compare_digest(str(raw.get("mac", "")), _anchor_mac(raw, key)):
            return [], f"the audit anchor in {where} was altered (its MAC does not match)"
        if str(raw.get("at")) != written_at.isoformat(timespec="microseconds"):
            return [], f"the audit anchor in {where} does not belong to it (copied from another record)"
        anchor = _Anchor(where, raw.get("head_id"), raw.get("head_hash"), int(raw.get("rows") or 0))
        found.setdefault((anchor.head_id, anchor.head_hash, anchor.rows), anchor)
    return sorted(found.values(), key=lambda a: (a.head_id or 0)), None


def verify_chain(uow: UnitOfWork) -> ChainVerification:
    """Walk the chain once: each row links to the previous and hashes to its stored hash
    (keyed when AUDIT_HMAC_KEY is set), and every anchored head is still where it was."""
    key = getattr(uow, "audit_key", None)
    with uow:
        anchors, forged = _anchors(uow, key)
        if forged:
            return ChainVerification(False, 0, None, forged)
        pending = list(anchors)
        while pending and pending[0].head_id is None:
            if pending[0].rows != 0:
                return ChainVerification(False, 0, None, f"{pending[0].where} anchored an impossible head")
            pending.pop(0)
        prev_hash = GENESIS_HASH
        checked = 0
        unkeyed_id: int | None = None
        for row in audit_rows.in_order(uow):
            if row.prev_hash != prev_hash:
                return ChainVerification(False, checked, row.id, "a row before this one was deleted or edited")
            if _row_digest(prev_hash, row, key) != row.row_hash:
                if key and _row_digest(prev_hash, row) == row.row_hash:
                    unkeyed_id = unkeyed_id or row.id
                else:
                    problem = "this row was edited after it was written"
                    if not key:
                        problem += " (or it is keyed with an AUDIT_HMAC_KEY this console does not have)"
                    return ChainVerification(False, checked, row.id, problem)
            prev_hash = row.row_hash
            checked += 1
            while pending and pending[0].head_id is not None and pending[0].head_id <= row.id:
                anchor = pending.pop(0)
                if anchor.head_id != row.id or anchor.head_hash != row.row_hash or anchor.rows != checked:
                    return ChainVerification(False, checked, anchor.head_id,
                                             f"row {anchor.head_id}, anchored by {anchor.where}, is gone or "
                                             "was replaced")
        if pending:
            anchor = pending[0]
            return ChainVerification(False, checked, anchor.head_id,
                                     f"the newest rows were deleted: {anchor.where} anchored row {anchor.head_id} "
                                     f"({anchor.rows} rows) and the chain now ends after {checked}")
        if unkeyed_id is not None:
            return ChainVerification(False, checked, unkeyed_id,
                                     "this row and others are hashed without AUDIT_HMAC_KEY: written before the "
                                     "key was set, or re-hashed by someone without it", anchors_checked=len(anchors))
        return ChainVerification(True, checked, keyed=bool(key), anchors_checked=len(anchors))


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 500
    offset: int = 0


AUDIT_CSV_COLUMNS = ("id", "at", "actor", "action", "target", "idempotency_key", "result", "error", "row_hash")


def entries_as_rows(entries: list[AuditLog]) -> list[dict[str, Any]]:
    """Plain rows for tables and CSV export, in AUDIT_CSV_COLUMNS order."""
    return [{column: getattr(entry, column) for column in AUDIT_CSV_COLUMNS} for entry in entries]


def distinct_values(uow: UnitOfWork) -> dict[str, list[str]]:
    """Actions and results present, for the page's filter choices."""
    with uow:
        return {"actions": audit_rows.distinct_actions(uow), "results": audit_rows.distinct_results(uow)}


def list_entries(uow: UnitOfWork, flt: AuditFilter) -> list[AuditLog]:
    with uow:
        return audit_rows.filtered(uow, actor=flt.actor, action=flt.action, target=flt.target, result=flt.result,
                                   since=flt.since, until=flt.until, limit=flt.limit, offset=flt.offset)


# --- the privileged guard ------------------------------------------------------

PRIVILEGED_ACTIONS: dict[str, Callable[..., Any]] = {}


class SystemCaller(str):
    """An actor name that carries the caller's own authority past `privileged`.

    `actor=SystemCaller("cli")` is how the CLI (whoever runs it has the server's
    configuration, hence every key), the QA matrix (its run was authorised as a whole) or a
    cron job calls a privileged function: the admin check is skipped and the function's
    own audit rows carry the name. It is a `str`, so the functions keep `actor: str`; text
    from a page, a form or a token is a plain `str` and is always checked. Pages never
    construct one (tests/security/test_authorization_matrix.py checks).
    """

    __slots__ = ()


def is_system_caller(actor: object) -> bool:
    return isinstance(actor, SystemCaller)


def require_admin_actor(actor: str | None, settings: Settings) -> str:
    email = normalise_email(actor)
    if email is None or not is_admin(email, settings):
        raise AccessDenied("You do not have access to this action.")
    return email


def privileged(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a service function taking `actor`, `settings` and `uow` keyword or
    positional arguments: non-admins get AccessDenied and a `denied` audit row.
    An explicit `SystemCaller` actor is let through (see its docstring)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        for required in ("actor", "settings", "uow"):
            if required not in signature.parameters:
                raise TypeError(f"{fn.__qualname__} must take '{required}' to be privileged")

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            actor = bound.arguments["actor"]
            if is_system_caller(actor):
                return fn(*args, **kwargs)
            settings: Settings = bound.arguments["settings"]
            uow: UnitOfWork = bound.arguments["uow"]
            try:
                require_admin_actor(actor, settings)
            except AccessDenied:
                target = next(
                    (str(v) for k, v in bound.arguments.items() if k.endswith("_id") and isinstance(v, str | int)),
                    None,
                )
                with uow:
                    record(uow, actor=str(actor or "anonymous"), action=action, result="denied", target=target)
                    uow.commit()
                raise
            return fn(*args, **kwargs)

        guarded.privileged_action = action  # type: ignore[attr-defined]
        PRIVILEGED_ACTIONS[action] = guarded
        return guarded

    return decorate
