"""The smoke test's read model: its steps, a run as the page and the sign-off see it, the QR
code, and the step table (services/smoke_test.py runs the test; this only reads)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from db.models import SmokeTest
from db.models.base import utcnow
from db.repositories import smoke_tests
from db.session import UnitOfWork
from services.money import format_money

IN_PROGRESS = ("open", "completed", "checking")
# Paid and not refunded yet: such a run is shown first and must be finished before a new one.
UNFINISHED_PAID = ("completed", "checking", "checked", "failed", "cleanup_failed")
STEPS = (
    ("checkout_created", "Checkout Session created"),
    ("checkout_completed", "checkout.session.completed received"),
    ("subscription_active", "Subscription active at Stripe"),
    ("billing_db", "Billing DB and console show it"),
    ("portal_session", "Customer Portal session created"),
    ("refund", "Payment refunded"),
    ("cancel", "Subscription cancelled"),
)
STEP_TITLES = dict(STEPS)


def step(name: str, passed: bool, detail: str, **ids: Any) -> dict[str, Any]:
    """One stored step: pass/fail, what was seen, the ids involved and when."""
    return {"step": name, "title": STEP_TITLES[name], "passed": passed, "detail": detail,
            "ids": {k: v for k, v in ids.items() if v is not None}, "at": utcnow().isoformat(timespec="seconds")}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def view(row: SmokeTest) -> dict[str, Any]:
    steps = list(row.steps or [])
    done = {s["step"] for s in steps if s.get("passed")}
    return {
        "id": row.id, "status": row.status, "mode": row.mode, "price_id": row.price_id,
        "started_at": row.started_at.isoformat(timespec="seconds"), "started_by": row.started_by,
        "checkout_session_id": row.checkout_session_id, "checkout_url": row.checkout_url,
        "completed_at": _iso(row.completed_at),
        "customer_id": row.customer_id, "subscription_id": row.subscription_id, "invoice_id": row.invoice_id,
        "payment_intent_id": row.payment_intent_id, "refund_id": row.refund_id,
        "amount": row.amount, "currency": row.currency,
        "amount_text": format_money(row.amount, row.currency) if row.amount is not None and row.currency else None,
        "steps": steps,
        "passed": all(name in done for name, _title in STEPS),
        "failed": any(not s.get("passed") for s in steps),
        "finished_at": _iso(row.finished_at),
        "finished_by": row.finished_by,
    }


def latest(uow: UnitOfWork) -> dict[str, Any] | None:
    """The run to show: one that was paid and is not refunded yet if there is one, else the newest."""
    with uow:
        row = smoke_tests.newest(uow, statuses=UNFINISHED_PAID, paid=True) or smoke_tests.newest(uow)
        return view(row) if row else None


def get(uow: UnitOfWork, smoke_id: int) -> dict[str, Any] | None:
    with uow:
        row = smoke_tests.get(uow, smoke_id)
        return view(row) if row else None


def frozen_for_signoff(uow: UnitOfWork) -> dict[str, Any] | None:
    """The latest run as the sign-off record freezes it."""
    current = latest(uow)
    if current is None:
        return None
    keep = ("id", "status", "mode", "passed", "started_by", "started_at", "finished_at", "checkout_session_id",
            "subscription_id", "customer_id", "refund_id", "amount", "currency", "amount_text", "steps")
    return {k: current[k] for k in keep}


def qr_png(url: str, *, scale: int = 6) -> bytes:
    """The Checkout URL as a QR code (PNG), for paying from a phone."""
    import segno

    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=scale, border=2)
    return buffer.getvalue()


def step_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each step for a table: the seven steps in order, not-yet-run ones as waiting."""
    by_name = {s["step"]: s for s in result.get("steps") or []}
    rows = []
    for name, title in STEPS:
        found = by_name.get(name)
        rows.append({"step": title, "result": ("PASS" if found["passed"] else "FAIL") if found else "waiting",
                     "detail": found["detail"] if found else "",
                     "ids": ", ".join(f"{k} {v}" for k, v in (found or {}).get("ids", {}).items()),
                     "at": when_text(found["at"]) if found else ""})
    return rows


def when_text(iso: str | None) -> str:
    """A stored ISO time as people read it: "2026-12-04 18:19:04 UTC"."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment.tzinfo else f"{moment:%Y-%m-%d %H:%M:%S} UTC"
