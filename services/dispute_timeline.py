"""One dispute's timeline: what Stripe told us (its `charge.dispute.*` events in the inbox) and
what we did (the audit log), in time order.

Stripe's side: opened (as an inquiry or a chargeback), funds withdrawn, evidence staged or
submitted, an inquiry turned into a chargeback, funds reinstated, the network's decision. Ours:
who staged the evidence, attached each file, submitted or accepted, and every refusal or error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.models import AuditLog, StripeEvent
from db.repositories import disputes as repo
from db.session import UnitOfWork
from services import compelling_evidence as ce
from services.money import format_money

DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                  "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated")
AUDIT_ACTIONS = {"disputes.save_draft": "staged the evidence at Stripe (not submitted)",
                 "disputes.upload_file": "attached a file", "disputes.submit": "submitted the evidence",
                 "disputes.accept": "accepted the dispute"}
DECISIONS = {"won": "Won: the network decided for us", "lost": "Lost: the network decided for the cardholder",
             "warning_closed": "Inquiry closed without becoming a chargeback",
             "prevented": "Prevented before it became a dispute"}


# Events of one second keep their logical order (the created event first, the decision before the
# funds it reinstates).
KIND_ORDER = {"opened": 0, "escalated": 1, "funds_withdrawn": 2, "ours": 3, "staged": 3, "submitted": 4,
              "status": 5, "decision": 6, "funds_reinstated": 7}


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # opened | funds_withdrawn | funds_reinstated | staged | submitted | escalated | decision | ours
    what: str  # plain text; customer-controlled parts (file names) must be shown as plain text
    who: str  # "Stripe" or the person
    source: str  # the event id or "audit #n"
    result: str = "done"


def _amount(obj: dict[str, Any], sign: int) -> str:
    moves = [t for t in obj.get("balance_transactions") or [] if isinstance(t, dict)
             and (int(t.get("amount") or 0) * sign) > 0]
    move = moves[-1] if moves else None
    amount = abs(int(move.get("amount") or 0)) if move else int(obj.get("amount") or 0)
    text = format_money(amount, str(obj.get("currency") or "usd"))
    fee = int(move.get("fee") or 0) if move else 0
    return text + (f" (fee {format_money(fee, str(obj.get('currency') or 'usd'))})" if fee else "")


def _from_event(row: StripeEvent) -> Entry | None:
    payload = row.payload or {}
    obj = (payload.get("data") or {}).get("object") or {}
    previous = (payload.get("data") or {}).get("previous_attributes") or {}
    status = str(obj.get("status") or "")
    at = row.created
    if row.type == "charge.dispute.created":
        inquiry = status.startswith("warning_")
        card = (obj.get("payment_method_details") or {}).get("card") or {}
        network = card.get("network") or card.get("brand")
        code = card.get("network_reason_code") or obj.get("network_reason_code")
        amount = format_money(int(obj.get("amount") or 0), str(obj.get("currency") or "usd"))
        what = (f"Opened as {'an inquiry' if inquiry else 'a chargeback'}: {amount}, "
                f"reason {str(obj.get('reason') or 'general').replace('_', ' ')}")
        if network or code:
            what += f", {str(network or 'card').title()} reason code {code or 'not given'}"
        if ce.CE3 in (obj.get("enhanced_eligibility_types") or []):
            what += "; eligible for Visa Compelling Evidence 3.0"
        return Entry(at, "opened", what, "Stripe", row.id)
    if row.type == "charge.dispute.funds_withdrawn":
        return Entry(at, "funds_withdrawn", f"Funds withdrawn: {_amount(obj, -1)}", "Stripe", row.id)
    if row.type == "charge.dispute.funds_reinstated":
        return Entry(at, "funds_reinstated", f"Funds reinstated: {_amount(obj, 1)}", "Stripe", row.id)
    if row.type == "charge.dispute.closed":
        return Entry(at, "decision", DECISIONS.get(status, f"Closed: {status.replace('_', ' ')}"), "Stripe", row.id)
    if row.type == "charge.dispute.updated":
        before = str(previous.get("status") or "")
        if before.startswith("warning_") and not status.startswith("warning_"):
            return Entry(at, "escalated", "The inquiry became a chargeback", "Stripe", row.id)
        if before in ("needs_response", "warning_needs_response") and status.endswith("under_review"):
            details = obj.get("evidence_details") or {}
            state = ((details.get("enhanced_eligibility") or {}).get(ce.CE3) or {}).get("status")
            extra = f"; Visa CE 3.0: {state.replace('_', ' ')}" if state else ""
            return Entry(at, "submitted", f"Evidence received by Stripe and sent to the network{extra}", "Stripe",
                         row.id)
        if "evidence" in previous:
            return Entry(at, "staged", "Evidence staged at Stripe", "Stripe", row.id)
        if before and before != status:
            return Entry(at, "status", f"Status: {before.replace('_', ' ')} → {status.replace('_', ' ')}", "Stripe",
                         row.id)
    return None


def _from_audit(row: AuditLog) -> Entry:
    details = row.details or {}
    what = AUDIT_ACTIONS.get(row.action, row.action)
    if row.action == "disputes.upload_file" and details.get("filename"):
        what += f": {details['filename']}"
    if row.action == "disputes.submit" and details.get("ce3"):
        what += " with Visa CE 3.0 (prior payments " + ", ".join(details["ce3"].get("prior_charges") or []) + ")"
    if row.result != "ok" and row.error:
        what += f" — {row.error}"
    kind = "submitted" if row.action == "disputes.submit" else "ours"
    return Entry(row.at, kind, what, row.actor, f"audit #{row.id}", "done" if row.result == "ok" else row.result)


def timeline(uow: UnitOfWork, dispute_id: str) -> list[Entry]:
    """Every step of the dispute, oldest first."""
    with uow:
        dispute = repo.get(uow, dispute_id)
        events = repo.events(uow, dispute_id, DISPUTE_EVENTS)
        audits = repo.audit_rows(uow, dispute_id, AUDIT_ACTIONS, newest_first=False)
    entries = [e for e in (_from_event(row) for row in events) if e is not None]
    entries += [_from_audit(row) for row in audits]
    if dispute is not None and dispute.created and not any(e.kind == "opened" for e in entries):
        # Known only from a list read (no event stored): the opening is still a fact.
        entries.append(Entry(dispute.created, "opened", f"Opened: {format_money(dispute.amount, dispute.currency)}, "
                             f"reason {(dispute.reason or 'general').replace('_', ' ')}", "Stripe", "dispute"))
    return sorted(entries, key=lambda e: (e.at, KIND_ORDER.get(e.kind, 5), 0 if e.who == "Stripe" else 1))
