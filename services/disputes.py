"""The disputes workspace: a queue by deadline, each dispute's context, evidence drafted
from the billing DB, staged to Stripe any number of times (submit=false) and submitted
exactly once (submit=true), or accepted. Local checks run before any Stripe call."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

from db.models import Dispute, DisputeEvidenceDraft
from db.models.base import utcnow
from db.repositories import disputes as repo
from db.session import UnitOfWork
from services import audit, evidence_files, stripe_mapping
from services import compelling_evidence as ce
from services import dispute_evidence as ev
from services.audit import privileged
from services.config import Settings
from services.dispute_queue import OPEN_STATUSES
from services.dispute_queue import DisputeActionError as DisputeActionError  # raised by the actions too
from services.dispute_views import draft_file_names, submission_preview
from services.stripe_gateway import StripeGateway, StripeGatewayError


# --- actions ---------------------------------------------------------------------------------------
def _fresh(uow: UnitOfWork, dispute: dict[str, Any]) -> None:
    stored = repo.get(uow, dispute["id"])
    stripe_mapping.upsert_dispute(uow, dispute, observed_at=stripe_mapping.fresh_observed_at(stored))


def _existing(uow: UnitOfWork, dispute_id: str) -> Dispute:
    dispute = repo.get(uow, dispute_id)
    if dispute is None:
        raise DisputeActionError(f"There is no dispute {dispute_id}.")
    return dispute


def _check_open(dispute: Dispute, now: datetime) -> None:
    if dispute.status not in OPEN_STATUSES or dispute.submitted_at is not None or dispute.accepted_at is not None:
        raise DisputeActionError(f"This dispute is {dispute.status.replace('_', ' ')}; its evidence can no longer "
                                 "change.")
    if dispute.due_by is not None and dispute.due_by < now:
        raise DisputeActionError(f"The evidence was due by {dispute.due_by:%Y-%m-%d %H:%M} UTC; Stripe no longer "
                                 "accepts it.")


def _check_open_audited(uow: UnitOfWork, dispute: Dispute, now: datetime, *, actor: str, action: str) -> None:
    """`_check_open`, leaving a `refused` audit row when it refuses (e.g. an overdue dispute)."""
    try:
        _check_open(dispute, now)
    except DisputeActionError as error:
        if dispute.submitted_at is not None or dispute.accepted_at is not None:
            raise  # a second click racing the first: the claim below refuses that one, unaudited as before
        audit.record(uow, actor=actor, action=action, target=dispute.id, result="refused", error=error.message,
                     details={"due_by": dispute.due_by.isoformat() if dispute.due_by else None,
                              "status": dispute.status})
        uow.commit()
        raise


def read_only_reason(dispute: Dispute, now: datetime) -> str | None:
    """Why the evidence form cannot change, in words for the top of the page; None while it can."""
    if dispute.submitted_at is not None:
        return (f"Read-only: evidence was submitted {dispute.submitted_at:%Y-%m-%d %H:%M} UTC"
                + (f" by {dispute.submitted_by}" if dispute.submitted_by else "") + ".")
    if dispute.accepted_at is not None:
        return f"Read-only: this dispute was accepted {dispute.accepted_at:%Y-%m-%d %H:%M} UTC."
    if dispute.status not in OPEN_STATUSES:
        return f"Read-only: this dispute is {dispute.status.replace('_', ' ')}; its evidence can no longer change."
    if dispute.due_by is not None and dispute.due_by < now:
        return (f"Overdue, read-only: the evidence was due by {dispute.due_by:%Y-%m-%d %H:%M} UTC and Stripe no "
                "longer accepts evidence for it. Nothing can be saved or submitted.")
    return None


def _clean(fields: dict[str, Any]) -> dict[str, str]:
    return {k: str(v).strip() for k, v in fields.items() if v is not None and str(v).strip()}


@privileged("disputes.save_draft")
def save_draft(dispute_id: str, fields: dict[str, Any], *, actor: str, settings: Settings, uow: UnitOfWork,
               gateway: StripeGateway) -> DisputeEvidenceDraft:
    """Keep the draft locally and stage it at Stripe with submit=false (any number of times)."""
    text = _clean(fields)
    problem = ev.check_text(text)
    with uow:
        dispute = _existing(uow, dispute_id)
        _check_open_audited(uow, dispute, utcnow(), actor=actor, action="disputes.save_draft")
        if problem:
            raise DisputeActionError(problem)
        draft = repo.draft(uow, dispute_id)
        version = (draft.version if draft else 0) + 1
        files = dict(draft.files) if draft else {}
    evidence: dict[str, Any] = {**{name: "" for name in ev.TEXT_FIELDS if name not in text}, **text,
                                **{name: meta["file_id"] for name, meta in files.items()}}
    enhanced = ce.assess(uow, dispute_id, test_mode=settings.stripe_mode == "test").enhanced_evidence()
    if enhanced:  # Visa CE 3.0: the prior undisputed payments, staged so Stripe reports eligibility
        evidence["enhanced_evidence"] = enhanced
    key = f"dispute-evidence:{dispute_id}:v{version}"
    try:
        staged = gateway.update_dispute(dispute_id, {"evidence": evidence, "submit": False}, idempotency_key=key)
    except StripeGatewayError as error:
        with uow:
            audit.record(uow, actor=actor, action="disputes.save_draft", target=dispute_id, idempotency_key=key,
                         result="error", error=error.message)
            uow.commit()
        raise DisputeActionError(error.message) from None
    with uow:
        draft = repo.draft_or_new(uow, dispute_id)
        draft.fields, draft.version, draft.updated_by = text, version, actor
        draft.staged_to_stripe_at = utcnow()
        _fresh(uow, staged)
        audit.record(uow, actor=actor, action="disputes.save_draft", target=dispute_id, idempotency_key=key,
                     result="ok", details={"fields": sorted(text), "characters": ev.text_length(text),
                                           **_ce3_details(enhanced)})
        uow.commit()
        return draft


@privileged("disputes.upload_file")
def upload_evidence_file(dispute_id: str, evidence_field: str, filename: str, content: bytes, *, actor: str,
                         settings: Settings, uow: UnitOfWork, gateway: StripeGateway) -> dict[str, Any]:
    """Upload a PDF/JPEG/PNG (<= 5 MB) with purpose dispute_evidence and attach it to a field of the draft."""
    if evidence_field not in ev.FILE_FIELDS:
        raise DisputeActionError(f"{evidence_field} does not take a file.")
    problem = ev.check_file(content)
    if problem:
        raise DisputeActionError(problem)
    with uow:
        _check_open_audited(uow, _existing(uow, dispute_id), utcnow(), actor=actor, action="disputes.upload_file")
    digest = hashlib.sha256(content).hexdigest()
    key = f"dispute-file:{dispute_id}:{digest}"
    try:
        uploaded = gateway.upload_file(io.BytesIO(content), filename=filename, purpose="dispute_evidence",
                                       idempotency_key=key)
    except StripeGatewayError as error:
        raise DisputeActionError(error.message) from None
    meta = {"file_id": uploaded["id"], "filename": filename, "size": len(content), "type": uploaded.get("type")}
    with uow:
        draft = repo.draft_or_new(uow, dispute_id)
        draft.files = {**draft.files, evidence_field: meta}
        draft.updated_by = actor
        evidence_files.keep_copy(uow, dispute_id, evidence_field, uploaded["id"], filename, content, actor=actor)
        audit.record(uow, actor=actor, action="disputes.upload_file", target=dispute_id, idempotency_key=key,
                     result="ok", details={"field": evidence_field, "file": uploaded["id"], "filename": filename,
                                           "size": len(content)})
        uow.commit()
    return meta



@privileged("disputes.submit")
def submit_evidence(dispute_id: str, *, actor: str, settings: Settings, uow: UnitOfWork,
                    gateway: StripeGateway) -> Dispute:
    """Send the saved draft with submit=true, once. The form is read-only afterwards."""
    evidence = submission_preview(uow, dispute_id)
    key = f"dispute-submit:{dispute_id}"
    now = utcnow()
    with uow:
        _check_open_audited(uow, _existing(uow, dispute_id), now, actor=actor, action="disputes.submit")
        if not evidence:
            raise DisputeActionError("Save a draft with some evidence before submitting.")
        problem = ev.check_text({k: v for k, v in evidence.items() if k in ev.TEXT_FIELDS})
        if problem:
            raise DisputeActionError(problem)
        claimed = repo.claim_answer(uow, dispute_id, {"submitted_at": now, "submitted_by": actor})
        uow.commit()
    if not claimed:
        raise DisputeActionError("This evidence is already being submitted.")
    enhanced = ce.assess(uow, dispute_id, test_mode=settings.stripe_mode == "test").enhanced_evidence()
    sent: dict[str, Any] = {**evidence, "enhanced_evidence": enhanced} if enhanced else evidence
    return _finish_claimed(
        uow, dispute_id, action="disputes.submit", key=key, actor=actor,
        call=lambda: gateway.update_dispute(dispute_id, {"evidence": sent, "submit": True}, idempotency_key=key),
        release={"submitted_at": None, "submitted_by": None},
        details={"fields": sorted(evidence), "files": draft_file_names(uow, dispute_id), **_ce3_details(enhanced)},
    )


def _ce3_details(enhanced: dict[str, Any] | None) -> dict[str, Any]:
    """For the audit row: which prior payments went out as Visa CE 3.0 evidence (no PII)."""
    if not enhanced:
        return {}
    ce3 = enhanced[ce.CE3]
    shared = [k for k in ("customer_purchase_ip", "customer_device_id", "customer_device_fingerprint",
                          "customer_email_address", "customer_account_id", "shipping_address")
              if k in ce3["disputed_transaction"]]
    return {"ce3": {"prior_charges": [p["charge"] for p in ce3["prior_undisputed_transactions"]],
                    "elements": shared}}


@privileged("disputes.accept")
def accept_dispute(dispute_id: str, *, actor: str, settings: Settings, uow: UnitOfWork,
                   gateway: StripeGateway) -> Dispute:
    """Close the dispute: the amount is lost to the cardholder."""
    key = f"dispute-accept:{dispute_id}"
    now = utcnow()
    with uow:
        dispute = _existing(uow, dispute_id)
        if dispute.status not in OPEN_STATUSES:
            raise DisputeActionError(f"This dispute is {dispute.status.replace('_', ' ')}; it cannot be accepted.")
        claimed = repo.claim_answer(uow, dispute_id, {"accepted_at": now, "accepted_by": actor})
        uow.commit()
    if not claimed:
        raise DisputeActionError("This dispute is already being accepted or submitted.")
    return _finish_claimed(
        uow, dispute_id, action="disputes.accept", key=key, actor=actor,
        call=lambda: gateway.close_dispute(dispute_id, idempotency_key=key),
        release={"accepted_at": None, "accepted_by": None}, details={},
    )


def _finish_claimed(uow: UnitOfWork, dispute_id: str, *, action: str, key: str, actor: str,
                    call: Callable[[], dict[str, Any]], release: dict[str, Any],
                    details: dict[str, Any]) -> Dispute:
    """Make the Stripe call for a claimed submit/accept. On a Stripe error the claim is
    released (nothing local changes) and the error audited; on success the returned
    dispute is stored and the action audited."""
    try:
        result = call()
    except StripeGatewayError as error:
        with uow:
            repo.release_answer(uow, dispute_id, release)
            audit.record(uow, actor=actor, action=action, target=dispute_id, idempotency_key=key, result="error",
                         error=error.message)
            uow.commit()
        raise DisputeActionError(error.message) from None
    with uow:
        _fresh(uow, result)
        audit.record(uow, actor=actor, action=action, target=dispute_id, idempotency_key=key, result="ok",
                     details={**details, "amount": result.get("amount"), "currency": result.get("currency")})
        uow.commit()
        return _existing(uow, dispute_id)
