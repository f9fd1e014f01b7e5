"""What the disputes page shows about evidence: the first draft from the billing DB, what
Submit will send (in words and as fields) and the evidence history from the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.repositories import disputes as repo
from db.session import UnitOfWork
from services import dispute_evidence as ev
from services.config import Settings
from services.dispute_queue import DisputeContext
from services.money import format_money


def auto_draft(context: DisputeContext, settings: Settings) -> dict[str, str]:
    """A first version of the evidence from what the billing DB knows."""
    customer = context.customer
    charge = context.charge or {}
    draft: dict[str, str] = {}
    if customer is not None:
        draft["customer_name"] = customer.name or ""
        draft["customer_email_address"] = customer.email or ""
    purchase_ip = (charge.get("metadata") or {}).get("ip") or (customer.raw.get("metadata", {}).get("ip")
                                                               if customer else None)
    if purchase_ip:
        draft["customer_purchase_ip"] = str(purchase_ip)
    billing = (charge.get("billing_details") or {}).get("address")
    if billing:
        draft["billing_address"] = ", ".join(str(v) for v in billing.values() if v)
    subscription = context.subscriptions[0] if context.subscriptions else None
    if subscription is not None:
        plan = subscription.plan or "subscription"
        draft["product_description"] = (f"{plan.title()} plan ({subscription.interval or 'recurring'}) of our "
                                        "software service, billed automatically until cancelled.")
        if subscription.current_period_start and subscription.current_period_end:
            draft["service_date"] = (f"{subscription.current_period_start:%Y-%m-%d} to "
                                     f"{subscription.current_period_end:%Y-%m-%d}")
        if not subscription.canceled_at:
            draft["cancellation_rebuttal"] = ("The customer had not cancelled the subscription before this charge; "
                                              "it was active for the billed period.")
    draft["refund_policy_disclosure"] = settings.refund_policy_text
    draft["cancellation_policy_disclosure"] = settings.cancellation_policy_text
    timeline = [f"{i.created:%Y-%m-%d} invoice {i.id}: {format_money(i.amount_due, i.currency)} {i.status}"
                for i in context.invoices if i.created]
    timeline += [f"refund {r.id}: {format_money(r.amount, r.currency)} ({r.reason or 'no reason'})"
                 for r in context.refunds]
    if timeline:
        draft["uncategorized_text"] = "Billing history:\n" + "\n".join(timeline)
    return {k: v for k, v in draft.items() if v}


# --- actions ---------------------------------------------------------------------------------------

def submission_preview(uow: UnitOfWork, dispute_id: str) -> dict[str, Any]:
    """Exactly what Submit will send."""
    with uow:
        draft = repo.draft(uow, dispute_id)
        if draft is None:
            return {}
        return {**draft.fields, **{name: meta["file_id"] for name, meta in draft.files.items()}}


@dataclass(frozen=True)
class EvidenceLine:
    label: str
    value: str  # the text, or for a file its name and size: never a file id
    is_file: bool


def draft_file_names(uow: UnitOfWork, dispute_id: str) -> dict[str, str]:
    with uow:
        draft = repo.draft(uow, dispute_id)
        return {name: str(meta.get("filename") or "file") for name, meta in (draft.files if draft else {}).items()}


def _label(name: str) -> str:
    field_ = ev.ALL_FIELDS.get(name)
    return field_.label if field_ else name.replace("_", " ").capitalize()


def submission_summary(uow: UnitOfWork, dispute_id: str) -> list[EvidenceLine]:
    """What Submit will send, in words: each field's label and text, each file's label and name."""
    with uow:
        draft = repo.draft(uow, dispute_id)
        if draft is None:
            return []
        order = {f.name: i for i, f in enumerate(f for group in ev.GROUPS.values() for f in group)}
        lines = [EvidenceLine(_label(name), str(value), False) for name, value in draft.fields.items() if value]
        for name, meta in draft.files.items():
            size = int(meta.get("size") or 0)
            lines.append(EvidenceLine(_label(name), f"{meta.get('filename') or 'file'} ({size / 1024:,.0f} KB)", True))
        names = {**{_label(n): n for n in draft.fields}, **{_label(n): n for n in draft.files}}
        return sorted(lines, key=lambda line: order.get(names.get(line.label, ""), len(order)))


_HISTORY_ACTIONS = {"disputes.save_draft": "saved the draft", "disputes.upload_file": "attached a file",
                    "disputes.submit": "submitted the evidence", "disputes.accept": "accepted the dispute"}


def evidence_history(uow: UnitOfWork, dispute_id: str) -> list[dict[str, Any]]:
    """Who did what to this dispute's evidence and when, from the audit log (newest first)."""
    with uow:
        rows = repo.audit_rows(uow, dispute_id, _HISTORY_ACTIONS, newest_first=True)
        history = []
        for row in rows:
            details = row.details or {}
            what = _HISTORY_ACTIONS[row.action]
            if row.action in ("disputes.submit", "disputes.save_draft"):
                files = details.get("files") or {}
                labels = [_label(n) for n in details.get("fields") or [] if n not in files]
                what += (": " + ", ".join(labels)) if labels else ""
                if files:
                    what += "; files: " + ", ".join(f"{_label(n)} ({name})" for n, name in files.items())
            elif row.action == "disputes.upload_file":
                what += f": {_label(str(details.get('field') or ''))}" + (
                    f" ({details['filename']})" if details.get("filename") else "")
            history.append({"when": f"{row.at:%Y-%m-%d %H:%M} UTC", "who": row.actor, "what": what,
                            "result": row.result if row.result != "ok" else "done"})
        return history


