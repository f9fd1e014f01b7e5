"""Tamper evidence of the audit log beyond a plain hash chain (issue 16, item 8).

A plain SHA-256 chain shows an edited or deleted row, but someone with DB access can
re-hash the whole chain, or delete the newest rows, and it still verifies. With
AUDIT_HMAC_KEY (kept outside the DB) a re-hash without the key shows, and each metrics
snapshot and sign-off freezes the chain's head, so deleting rows up to it shows too.
Runs on SQLite and PostgreSQL (migrated_url)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from db.models import AuditLog, MetricsSnapshot
from services import audit, metrics
from services.config import SettingsError, load_settings
from services.preflight_settings import check_audit_chain
from services.runtime import Runtime

KEY = "audit-key-CANARY-0123456789abcdefghijklmnop"
OTHER_KEY = "another-key-0123456789abcdefghijklmnopqrstu"


def _runtime(url: str, key: str | None = KEY, mode: str = "test") -> Runtime:
    env = {"DATABASE_URL": url, "ADMIN_EMAIL_DOMAIN": "example.com", "STRIPE_MODE": mode}
    if key:
        env["AUDIT_HMAC_KEY"] = key
    return Runtime(load_settings(env, env_file=None))


def _append(runtime: Runtime, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with runtime.uow() as uow:
            audit.record(uow, actor="ops@example.com", action="efw.refund", result="ok", target=f"issfr_{i}",
                         idempotency_key=f"refund:efw:issfr_{i}", details={"amount": 100 * i})
            uow.commit()


def _rehash_chain(runtime: Runtime, key: bytes | None) -> None:
    """What an attacker with DB access does after editing: recompute every link and hash."""
    with runtime.uow() as uow:
        prev = audit.GENESIS_HASH
        for row in uow.session.execute(select(AuditLog).order_by(AuditLog.id)).scalars():
            row.prev_hash = prev
            row.row_hash = audit._row_digest(prev, row, key)
            prev = row.row_hash
        uow.commit()


def _verify(runtime: Runtime) -> audit.ChainVerification:
    return audit.verify_chain(runtime.uow())


def test_keyed_chain_with_anchors_verifies(migrated_url: str) -> None:
    runtime = _runtime(migrated_url)
    _append(runtime, 4)
    snapshot = metrics.take_snapshot(runtime, actor="ops@example.com", hours=1)
    _append(runtime, 2, start=4)
    result = _verify(runtime)
    assert result.ok and result.keyed, result
    assert result.rows_checked == 7  # 6 actions + the snapshot's own audit row
    assert result.anchors_checked == 1
    anchor = snapshot["figures"]["audit_anchor"]
    assert anchor["rows"] == 4 and anchor["head_id"] is not None and len(anchor["mac"]) == 64
    assert check_audit_chain(runtime).passed


def test_edit_then_full_rehash_without_the_key_is_detected(migrated_url: str) -> None:
    runtime = _runtime(migrated_url)
    _append(runtime, 5)
    with runtime.uow() as uow:
        uow.session.execute(update(AuditLog).where(AuditLog.target == "issfr_2").values(result="denied"))
        uow.commit()
    _rehash_chain(runtime, key=None)  # plain SHA-256: all an attacker without the key can do
    result = _verify(runtime)
    assert not result.ok
    assert "without AUDIT_HMAC_KEY" in (result.problem or "")
    _rehash_chain(runtime, key=OTHER_KEY.encode())  # or a guessed key
    result = _verify(runtime)
    assert not result.ok and "edited" in (result.problem or "")
    preflight = check_audit_chain(runtime)
    assert not preflight.passed and preflight.severity == "blocking"


def _snapshot_then_delete_newest(runtime: Runtime) -> list[int]:
    """5 refunds, a snapshot anchoring them, then the last 2 refunds and the snapshot's own row go:
    the chain that is left links perfectly. Returns the ids there were."""
    _append(runtime, 5)
    metrics.take_snapshot(runtime, actor="ops@example.com", hours=1)
    with runtime.uow() as uow:
        ids = list(uow.session.execute(select(AuditLog.id).order_by(AuditLog.id)).scalars())
        uow.session.execute(delete(AuditLog).where(AuditLog.id.in_(ids[3:])))
        uow.commit()
    return ids


def test_deleting_the_newest_rows_is_detected_by_the_snapshot_anchor(migrated_url: str) -> None:
    runtime = _runtime(migrated_url)
    _snapshot_then_delete_newest(runtime)
    result = _verify(runtime)
    assert not result.ok
    assert "newest rows were deleted" in (result.problem or ""), result


def test_moving_the_anchor_back_needs_the_key(migrated_url: str) -> None:
    runtime = _runtime(migrated_url)
    ids = _snapshot_then_delete_newest(runtime)
    with runtime.uow() as uow:
        head = uow.session.execute(select(AuditLog).where(AuditLog.id == ids[2])).scalar_one()
        snapshot = uow.session.execute(select(MetricsSnapshot)).scalar_one()
        figures: dict[str, Any] = json.loads(json.dumps(snapshot.figures))
        figures["audit_anchor"].update(head_id=head.id, head_hash=head.row_hash, rows=3)  # mac left as it was
        digest = hashlib.sha256(json.dumps(figures, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        uow.session.execute(update(MetricsSnapshot).where(MetricsSnapshot.id == snapshot.id)
                            .values(figures=figures, content_sha256=digest))
        uow.commit()
    result = _verify(runtime)
    assert not result.ok and "was altered" in (result.problem or ""), result


def test_copying_an_older_anchor_into_a_newer_snapshot_is_detected(migrated_url: str) -> None:
    runtime = _runtime(migrated_url)
    _append(runtime, 2)
    metrics.take_snapshot(runtime, actor="ops@example.com", hours=1)
    _append(runtime, 3, start=2)
    metrics.take_snapshot(runtime, actor="ops@example.com", hours=1)
    with runtime.uow() as uow:
        first, second = uow.session.execute(select(MetricsSnapshot).order_by(MetricsSnapshot.id)).scalars()
        figures = json.loads(json.dumps(second.figures))
        figures["audit_anchor"] = first.figures["audit_anchor"]
        uow.session.execute(update(MetricsSnapshot).where(MetricsSnapshot.id == second.id).values(figures=figures))
        uow.commit()
    result = _verify(runtime)
    assert not result.ok and "copied from another record" in (result.problem or ""), result


def test_unkeyed_chain_still_catches_deleting_anchored_rows(migrated_url: str) -> None:
    runtime = _runtime(migrated_url, key=None)
    _append(runtime, 3)
    metrics.take_snapshot(runtime, actor="ops@example.com", hours=1)
    assert _verify(runtime).ok and not _verify(runtime).keyed
    with runtime.uow() as uow:
        newest = uow.session.execute(select(func_max_id())).scalar_one()
        uow.session.execute(delete(AuditLog).where(AuditLog.id == newest))
        uow.commit()
    assert _verify(runtime).ok  # the snapshot's own row was after the anchor: nothing anchored it
    with runtime.uow() as uow:
        newest = uow.session.execute(select(func_max_id())).scalar_one()
        uow.session.execute(delete(AuditLog).where(AuditLog.id == newest))
        uow.commit()
    assert not _verify(runtime).ok


def func_max_id() -> Any:
    from sqlalchemy import func

    return func.max(AuditLog.id)


def test_a_console_without_the_key_cannot_verify_a_keyed_chain(migrated_url: str) -> None:
    _append(_runtime(migrated_url), 2)
    result = _verify(_runtime(migrated_url, key=None))
    assert not result.ok and "AUDIT_HMAC_KEY this console does not have" in (result.problem or "")


def test_live_mode_without_a_key_blocks_the_preflight(migrated_url: str) -> None:
    test_mode = check_audit_chain(_runtime(migrated_url, key=None))
    assert not test_mode.passed and test_mode.severity == "warning"
    live = check_audit_chain(_runtime(migrated_url, key=None, mode="live"))
    assert not live.passed and live.severity == "blocking" and "AUDIT_HMAC_KEY" in live.fix


@pytest.mark.parametrize("key", ["short", "x" * 31])
def test_a_short_audit_key_is_refused_in_one_line(key: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({"AUDIT_HMAC_KEY": key}, env_file=None)
    message = str(error.value)
    assert "AUDIT_HMAC_KEY" in message and "\n" not in message.strip() and key not in message
