"""Visa Compelling Evidence 3.0, from the billing DB.

The rule, as Stripe documents it (docs.stripe.com/disputes/api/visa-ce3):
- the disputed payment is a Visa payment with network reason code 10.4;
- at least two earlier payments that were not disputed, with the same payment method, 120 to 365
  days before the disputed one (Stripe's support article: more than 119 and fewer than 366 calendar
  days), paid, not validation charges, and with no fraud reported on them;
- product descriptions for the disputed and both prior payments, and the disputed payment marked
  `merchandise` or `services`;
- the disputed payment and both prior payments share either two main evidence elements, or one
  main and one secondary. Main: customer purchase IP; customer device fingerprint or device id
  (the two together count once). Secondary: shipping address, customer email address, customer
  account id (the login on our platform).

What we know of each payment comes from the billing DB: the charge (card fingerprint, shipping,
`metadata.ip` / `metadata.device_id` / `metadata.device_fingerprint` recorded at checkout), the
customer (email, `metadata.user_id` as the account id) and the invoice (what was bought). When a
pair qualifies, it is sent as `evidence.enhanced_evidence.visa_compelling_evidence_3` with the
evidence; Stripe then reports `evidence_details.enhanced_eligibility.visa_compelling_evidence_3`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any

from db.models import Charge, Customer, Dispute, Invoice
from db.repositories import customer_history as history
from db.repositories import disputes as disputes_repo
from db.repositories import fraud_warnings as efw_repo
from db.session import UnitOfWork

CE3 = "visa_compelling_evidence_3"
WINDOW_DAYS = (120, 365)
MAX_CANDIDATES = 40  # the most recent qualifying payments considered for a pair
# Stripe's minimum lengths (API reference, prior_undisputed_transactions).
DEVICE_FINGERPRINT_MIN = 20
DEVICE_ID_MIN = 15

MAIN_ELEMENTS = {"customer_purchase_ip": "purchase IP address", "customer_device_fingerprint": "device fingerprint",
                 "customer_device_id": "device id"}
DEVICE = ("customer_device_fingerprint", "customer_device_id")  # together they count as one main element
SECONDARY_ELEMENTS = {"shipping_address": "shipping address", "customer_email_address": "email address",
                      "customer_account_id": "account login"}
ELEMENT_LABELS = {**MAIN_ELEMENTS, **SECONDARY_ELEMENTS}

REQUIRED_ACTION_WORDS = {
    "missing_customer_identifiers": "the payments do not share enough customer identifiers",
    "missing_disputed_transaction_description": "the disputed payment needs a product description",
    "missing_merchandise_or_services": "the disputed payment must be marked merchandise or services",
    "missing_prior_undisputed_transaction_description": "each prior payment needs a product description",
    "missing_prior_undisputed_transactions": "two prior undisputed payments are needed",
}


@dataclass(frozen=True)
class Payment:
    """One payment's CE 3.0 data elements, read from the billing DB."""

    charge_id: str
    created: datetime | None
    amount: int
    currency: str
    product_description: str
    customer_purchase_ip: str | None = None
    customer_device_id: str | None = None
    customer_device_fingerprint: str | None = None
    customer_email_address: str | None = None
    customer_account_id: str | None = None
    shipping_address: dict[str, str | None] | None = None

    def element(self, name: str) -> Any:
        return getattr(self, name)

    def as_evidence(self, *, prior: bool, elements: set[str]) -> dict[str, Any]:
        """The Stripe `disputed_transaction` / `prior_undisputed_transactions[]` object."""
        out: dict[str, Any] = {"product_description": self.product_description}
        if prior:
            out["charge"] = self.charge_id
        else:
            out["merchandise_or_services"] = "services"
        # Only the elements all three payments share; of the two device identifiers, one.
        device = next((d for d in DEVICE if d in elements), None)
        for name in ("customer_purchase_ip", device, "customer_email_address", "customer_account_id"):
            if name and name in elements:
                out[name] = getattr(self, name)
        if "shipping_address" in elements and self.shipping_address:
            out["shipping_address"] = dict(self.shipping_address)
        return out


@dataclass
class Assessment:
    applies: bool  # a Visa 10.4 dispute (or Stripe lists it as CE 3.0 eligible)
    qualifies: bool
    reasons: list[str]  # why it does not qualify, in words
    network: str | None
    network_reason_code: str | None
    disputed: Payment | None = None
    candidates: list[Payment] = field(default_factory=list)  # prior undisputed payments in the window
    pair: tuple[Payment, Payment] | None = None
    other_card_allowed: bool = False  # test mode: prior payments on another card were considered
    elements: list[str] = field(default_factory=list)  # the shared elements the pair qualifies on
    stripe_status: str | None = None  # evidence_details.enhanced_eligibility.visa_compelling_evidence_3
    stripe_required_actions: list[str] = field(default_factory=list)

    def enhanced_evidence(self) -> dict[str, Any] | None:
        """`evidence.enhanced_evidence` to send, or None when no pair qualifies."""
        if not self.qualifies or self.pair is None or self.disputed is None:
            return None
        shared = set(self.elements)
        return {CE3: {
            "disputed_transaction": self.disputed.as_evidence(prior=False, elements=shared),
            "prior_undisputed_transactions": [p.as_evidence(prior=True, elements=shared) for p in self.pair],
        }}


def network_of(dispute: Dispute) -> tuple[str | None, str | None]:
    """(network, network reason code) as Stripe reports them on the dispute."""
    raw = dispute.raw or {}
    card = ((raw.get("payment_method_details") or {}).get("card")) or {}
    network = card.get("network") or card.get("brand")
    code = card.get("network_reason_code") or raw.get("network_reason_code")
    return (str(network) if network else None), (str(code) if code else None)


def _text(value: Any, minimum: int = 1) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if len(text) >= minimum else None


def _address(raw: Any) -> dict[str, str | None] | None:
    address = (raw or {}).get("address") if isinstance(raw, dict) else None
    if not isinstance(address, dict) or not address.get("line1"):
        return None
    return {k: (str(address[k]) if address.get(k) else None)
            for k in ("city", "country", "line1", "line2", "postal_code", "state")}


def _description(charge: Charge, invoice: Invoice | None) -> str:
    if invoice is not None and invoice.plan:
        period = f" ({invoice.created:%Y-%m-%d})" if invoice.created else ""
        return f"{invoice.plan.title()} plan subscription{period}, software service"
    raw_description = (charge.raw or {}).get("description")
    return str(raw_description) if raw_description else "Software subscription service"


def _payment(charge: Charge, customer: Customer | None, invoice: Invoice | None) -> Payment:
    raw = charge.raw or {}
    meta = raw.get("metadata") or {}
    billing = raw.get("billing_details") or {}
    return Payment(
        charge_id=charge.id, created=charge.created, amount=charge.amount, currency=charge.currency,
        product_description=_description(charge, invoice),
        customer_purchase_ip=_text(meta.get("ip") or meta.get("customer_purchase_ip")),
        customer_device_id=_text(meta.get("device_id"), DEVICE_ID_MIN),
        customer_device_fingerprint=_text(meta.get("device_fingerprint"), DEVICE_FINGERPRINT_MIN),
        customer_email_address=_text((customer.email if customer else None) or billing.get("email")),
        customer_account_id=_text(customer.user_id if customer else None),
        shipping_address=_address(raw.get("shipping")),
    )


def _same(payments: list[Payment], name: str) -> bool:
    return _same_value([p.element(name) for p in payments])


def _same_value(values: list[Any]) -> bool:
    return all(v for v in values) and all(v == values[0] for v in values)


def shared_elements(payments: list[Payment]) -> list[str]:
    return [name for name in ELEMENT_LABELS if _same(payments, name)]


def elements_qualify(elements: list[str]) -> bool:
    main = ("customer_purchase_ip" in elements) + any(d in elements for d in DEVICE)
    secondary = sum(1 for e in elements if e in SECONDARY_ELEMENTS)
    return main >= 2 or (main >= 1 and secondary >= 1)


def assess(uow: UnitOfWork, dispute_id: str, *, test_mode: bool = False) -> Assessment:
    """Whether this dispute can be answered with CE 3.0 from what the billing DB knows.

    `test_mode`: Stripe's test environment does not check the prior payments' payment method
    (every Stripe test card has its own fingerprint, and its CE 3.0 card disputes every payment),
    so neither do we there; the date window and the shared elements are checked in both modes."""
    with uow:
        dispute = disputes_repo.get(uow, dispute_id)
        if dispute is None:
            return Assessment(False, False, ["There is no such dispute."], None, None)
        network, code = network_of(dispute)
        raw = dispute.raw or {}
        listed = CE3 in (raw.get("enhanced_eligibility_types") or [])
        state = ((raw.get("evidence_details") or {}).get("enhanced_eligibility") or {}).get(CE3) or {}
        applies = listed or (network == "visa" and code == "10.4")
        result = Assessment(applies, False, [], network, code, stripe_status=state.get("status"),
                            stripe_required_actions=list(state.get("required_actions") or []),
                            other_card_allowed=test_mode)
        if not applies:
            result.reasons.append("CE 3.0 is for Visa disputes with network reason code 10.4 (card-absent fraud); "
                                  f"this one is {network or 'an unknown network'} "
                                  f"{code or 'with no network reason code'}.")
            return result
        charge = history.charge(uow, dispute.charge_id)
        if charge is None or charge.created is None:
            result.reasons.append("The disputed charge is not in the billing DB yet (run a sync).")
            return result
        customer = history.customer(uow, charge.stripe_customer_id)
        invoice = history.invoice(uow, charge.invoice_id)
        result.disputed = _payment(charge, customer, invoice)
        if not charge.stripe_customer_id:
            result.reasons.append("The disputed charge has no customer, so there is no payment history.")
            return result
        rows = history.prior_paid_charges(uow, charge.stripe_customer_id, excluding=charge.id)
        disputed_ids = disputes_repo.disputed_charge_ids(uow, [r.id for r in rows])
        fraud_ids = efw_repo.warned_charge_ids(uow, [r.id for r in rows])
        invoices = history.invoices(uow, [r.invoice_id or "" for r in rows])
        for row in rows:
            if row.id in disputed_ids or row.id in fraud_ids or row.created is None:
                continue
            if row.amount_refunded >= row.amount:  # refunded in full: not a payment that stood
                continue
            same_card = bool(charge.card_fingerprint) and row.card_fingerprint == charge.card_fingerprint
            if not same_card and not test_mode:
                continue  # the same payment method as the disputed payment
            days = (charge.created.date() - row.created.date()).days
            if WINDOW_DAYS[0] <= days <= WINDOW_DAYS[1]:
                result.candidates.append(_payment(row, customer, invoices.get(row.invoice_id or "")))
    result.candidates = result.candidates[:MAX_CANDIDATES]
    if len(result.candidates) < 2:
        result.reasons.append(f"CE 3.0 needs two prior undisputed payments with the same card "
                              f"{WINDOW_DAYS[0]}–{WINDOW_DAYS[1]} days before the disputed one; the billing DB has "
                              f"{len(result.candidates)}.")
        return result
    best: tuple[Payment, Payment] | None = None
    best_elements: list[str] = []
    for first, second in combinations(result.candidates, 2):  # most recent first
        elements = shared_elements([result.disputed, first, second])
        if elements_qualify(elements) and len(elements) > len(best_elements):
            best, best_elements = (first, second), elements
    if best is None:
        result.reasons.append("No two prior payments share two main identifiers (purchase IP, device) or one main "
                              "and one secondary (shipping address, email, account login) with the disputed one.")
        return result
    result.qualifies, result.pair, result.elements = True, best, best_elements
    return result


def stripe_status_words(assessment: Assessment) -> str | None:
    """What Stripe says of the CE 3.0 evidence so far, in words."""
    if not assessment.stripe_status:
        return None
    words = {"qualified": "qualified", "requires_action": "needs more evidence",
             "not_qualified": "not qualified (submitted as standard evidence)"}
    text = f"Stripe: {words.get(assessment.stripe_status, assessment.stripe_status)}"
    if assessment.stripe_required_actions:
        text += " — " + "; ".join(REQUIRED_ACTION_WORDS.get(a, a.replace("_", " "))
                                  for a in assessment.stripe_required_actions)
    return text
