"""Visa Compelling Evidence 3.0: the evidence shape and the eligibility Stripe reports for it."""

from __future__ import annotations

from typing import Any

from emulator.state import Json
from emulator.wire.protocol import StripeApiError

# Visa CE 3.0 (docs.stripe.com/disputes/api/visa-ce3): the disputed payment and both prior undisputed
# payments must share two main evidence elements, or one main and one secondary. Device fingerprint and
# device id count as one main element. In test mode Stripe does not check the prior payments' payment
# method or dates, but it does check these elements.
CE3_MAIN = (("customer_purchase_ip",), ("customer_device_fingerprint", "customer_device_id"))


CE3_SECONDARY = ("shipping_address", "customer_email_address", "customer_account_id")


CE3_TEXT = {"customer_account_id", "customer_device_fingerprint", "customer_device_id", "customer_email_address",
            "customer_purchase_ip", "product_description"}


ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")


def _ce3_same(transactions: list[Json], field: str) -> bool:
    values = [t.get(field) for t in transactions]
    return all(v not in (None, "", {}) for v in values) and all(v == values[0] for v in values)


def ce3_eligibility(ce3: Json) -> Json:
    """`evidence_details.enhanced_eligibility.visa_compelling_evidence_3` for the evidence so far."""
    disputed = ce3.get("disputed_transaction") or {}
    priors = [p for p in ce3.get("prior_undisputed_transactions") or [] if p.get("charge")]
    actions = []
    if not disputed.get("product_description"):
        actions.append("missing_disputed_transaction_description")
    if disputed.get("merchandise_or_services") not in ("merchandise", "services"):
        actions.append("missing_merchandise_or_services")
    if len(priors) < 2:
        actions.append("missing_prior_undisputed_transactions")
    elif not all(p.get("product_description") for p in priors):
        actions.append("missing_prior_undisputed_transaction_description")
    chain = [disputed, *priors[:2]]
    main = sum(1 for group in CE3_MAIN if any(_ce3_same(chain, f) for f in group)) if len(chain) == 3 else 0
    secondary = sum(1 for f in CE3_SECONDARY if _ce3_same(chain, f)) if len(chain) == 3 else 0
    if not (main >= 2 or (main >= 1 and secondary >= 1)):
        actions.append("missing_customer_identifiers")
    return {"required_actions": sorted(actions), "status": "requires_action" if actions else "qualified"}


def _ce3_transaction(raw: Any, param: str, *, prior: bool) -> Json:
    if not isinstance(raw, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param=param)
    allowed = CE3_TEXT | {"shipping_address"} | ({"charge"} if prior else {"merchandise_or_services"})
    for name in raw:
        if name not in allowed:
            raise StripeApiError(400, f"Received unknown parameter: {param}[{name}]", code="parameter_unknown",
                                 param=f"{param}[{name}]")
    if not prior and raw.get("merchandise_or_services") not in (None, "", "merchandise", "services"):
        raise StripeApiError(400, f"Invalid {param}[merchandise_or_services]: must be one of merchandise or "
                                  "services", code="parameter_invalid_string",
                             param=f"{param}[merchandise_or_services]")
    shipping = raw.get("shipping_address")
    if shipping not in (None, "") and not isinstance(shipping, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param=f"{param}[shipping_address]")
    result: Json = {name: (raw.get(name) or None) for name in CE3_TEXT}
    result["shipping_address"] = {k: (shipping or {}).get(k) or None for k in ADDRESS_FIELDS} if shipping else None
    if prior:
        result["charge"] = raw.get("charge") or None
    else:
        result["merchandise_or_services"] = raw.get("merchandise_or_services") or None
    return result


def _merge_ce3(dispute: Json, enhanced: Any) -> Json | None:
    """Validate `evidence[enhanced_evidence]` and return the merged visa_compelling_evidence_3 object."""
    if enhanced in (None, "", {}):
        return None
    if not isinstance(enhanced, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param="evidence[enhanced_evidence]")
    for name in enhanced:
        if name not in ("visa_compelling_evidence_3", "visa_compliance", "mastercard_compliance"):
            raise StripeApiError(400, f"Received unknown parameter: evidence[enhanced_evidence][{name}]",
                                 code="parameter_unknown", param=f"evidence[enhanced_evidence][{name}]")
    raw = enhanced.get("visa_compelling_evidence_3")
    if raw is None:
        return None
    param = "evidence[enhanced_evidence][visa_compelling_evidence_3]"
    # Stripe lists eligible disputes in enhanced_eligibility_types and also takes CE 3.0 evidence added by hand
    # for a Visa 10.4 dispute it did not list (docs: "Autofilled evidence").
    if "visa_compelling_evidence_3" not in dispute.get("enhanced_eligibility_types", []) \
            and dispute.get("network_reason_code") != "10.4":
        raise StripeApiError(400, "This dispute is not eligible for Visa Compelling Evidence 3.0.", param=param)
    if not isinstance(raw, dict):
        raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param=param)
    current = (dispute["evidence"].get("enhanced_evidence") or {}).get("visa_compelling_evidence_3") or {}
    merged = dict(current)
    if "disputed_transaction" in raw:
        merged["disputed_transaction"] = _ce3_transaction(raw["disputed_transaction"],
                                                          f"{param}[disputed_transaction]", prior=False)
    if "prior_undisputed_transactions" in raw:
        priors = raw["prior_undisputed_transactions"] or []
        if not isinstance(priors, list):
            raise StripeApiError(400, "Invalid array", code="parameter_invalid_empty",
                                 param=f"{param}[prior_undisputed_transactions]")
        merged["prior_undisputed_transactions"] = [
            _ce3_transaction(p, f"{param}[prior_undisputed_transactions][{i}]", prior=True)
            for i, p in enumerate(priors)]
    return merged
