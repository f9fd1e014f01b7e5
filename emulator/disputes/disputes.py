"""Disputes: created by test cards or the test helper, evidence (Visa CE 3.0 in disputes/ce3.py),
submission, closing, inquiries escalating."""

from __future__ import annotations

from emulator.disputes.ce3 import _merge_ce3, ce3_eligibility
from emulator.payments.refunds import RefundsMixin
from emulator.state import DAY, Json, new_id
from emulator.wire.protocol import StripeApiError, to_bool

DISPUTE_RESPONSE_DAYS = 7

DISPUTE_FEE = 1500  # Stripe's dispute fee in USD minor units, on the withdrawal balance transaction

EVIDENCE_TEXT_LIMIT = 150_000

EVIDENCE_TEXT_FIELDS = {
    "access_activity_log", "billing_address", "cancellation_policy_disclosure", "cancellation_rebuttal",
    "customer_email_address", "customer_name", "customer_purchase_ip", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "refund_policy_disclosure", "refund_refusal_explanation",
    "service_date", "shipping_address", "shipping_carrier", "shipping_date", "shipping_tracking_number",
    "uncategorized_text",
}

EVIDENCE_FILE_FIELDS = {
    "cancellation_policy", "customer_communication", "customer_signature", "duplicate_charge_documentation",
    "receipt", "refund_policy", "service_documentation", "shipping_documentation", "uncategorized_file",
}



class DisputesMixin(RefundsMixin):
    def create_dispute_for(self, charge: Json, now: int, *, inquiry: bool = False, reason: str = "fraudulent",
                           due_in_days: float = DISPUTE_RESPONSE_DAYS, ce3: bool = False) -> Json:
        card = (charge.get("payment_method_details") or {}).get("card") or {}
        reason_code = "10.4" if ce3 else None
        dispute = {
            "id": new_id("dp"),
            "object": "dispute",
            "amount": charge["amount"],
            "balance_transactions": [],
            "charge": charge["id"],
            "created": now,
            "currency": charge["currency"],
            "enhanced_eligibility_types": ["visa_compelling_evidence_3"] if ce3 else [],
            "evidence": {**{field: None for field in sorted(EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS)},
                         "enhanced_evidence": {"visa_compelling_evidence_3": {
                             "disputed_transaction": None, "prior_undisputed_transactions": []}} if ce3 else {}},
            "evidence_details": {
                "due_by": int(now + due_in_days * DAY),
                "enhanced_eligibility": {"visa_compelling_evidence_3": ce3_eligibility({})} if ce3 else {},
                "has_evidence": False,
                "submission_method": "not_submitted",
                "past_due": False,
                "submission_count": 0,
            },
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "network_reason_code": reason_code,
            "payment_intent": charge.get("payment_intent"),
            "payment_method_details": {"type": "card", "card": {
                "brand": card.get("brand") or "visa", "case_type": "inquiry" if inquiry else "chargeback",
                "network": card.get("network") or card.get("brand") or "visa", "network_reason_code": reason_code}},
            "reason": "general" if inquiry else reason,
            "status": "warning_needs_response" if inquiry else "needs_response",
        }
        self.put("dispute", dispute)
        charge["disputed"] = True
        self.emit("charge.dispute.created", dispute, created=now)
        if not inquiry:
            # Stripe debits the disputed amount plus its dispute fee (a "Dispute fee" stripe_fee line).
            dispute["balance_transactions"] = [self._balance_transaction(
                -charge["amount"], charge["currency"], now, dispute["id"], "Chargeback withdrawal", fee=DISPUTE_FEE)]
            self.emit("charge.dispute.funds_withdrawn", dispute, created=now)
        self._efw_no_longer_actionable(charge["id"], now)
        return dispute

    def update_dispute(self, dispute_id: str, params: Json) -> Json:
        dispute = self.get("dispute", dispute_id, "dispute")
        now = self.now_for(self.objects["charge"][dispute["charge"]].get("customer"))
        evidence = params.get("evidence") or {}
        if evidence == "":
            evidence = {}
        if not isinstance(evidence, dict):
            raise StripeApiError(400, "Invalid hash", code="parameter_invalid_empty", param="evidence")
        evidence = dict(evidence)
        enhanced = evidence.pop("enhanced_evidence", None)
        for field in evidence:
            if field not in EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS:
                raise StripeApiError(400, f"Received unknown parameter: evidence[{field}]",
                                     code="parameter_unknown", param=f"evidence[{field}]")
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise StripeApiError(
                400, "This dispute is already closed or its evidence was already submitted; "
                     "evidence can no longer be updated.", code="dispute_already_submitted" if dispute["status"]
                == "under_review" else "dispute_closed")
        if now > dispute["evidence_details"]["due_by"]:
            dispute["evidence_details"]["past_due"] = True
            raise StripeApiError(400, "The deadline to respond to this dispute has passed.", code="dispute_past_due")
        for field, value in evidence.items():
            if field in EVIDENCE_FILE_FIELDS and value:
                file = self.get("file", value, "file", f"evidence[{field}]")
                if file["purpose"] != "dispute_evidence":
                    raise StripeApiError(400, f"The file {value} has purpose {file['purpose']}; "
                                              "dispute evidence needs purpose dispute_evidence.",
                                         param=f"evidence[{field}]")
        merged = {**dispute["evidence"], **{k: (v or None) for k, v in evidence.items()}}
        text = sum(len(str(merged[f] or "")) for f in EVIDENCE_TEXT_FIELDS)
        if text > EVIDENCE_TEXT_LIMIT:
            raise StripeApiError(400, "The combined length of the evidence text fields exceeds 150000 characters.",
                                 param="evidence")
        ce3 = _merge_ce3(dispute, enhanced)
        before = self.snapshot(dispute)
        if ce3 is not None:
            merged["enhanced_evidence"] = {**(merged.get("enhanced_evidence") or {}), "visa_compelling_evidence_3": ce3}
        dispute["evidence"] = merged
        dispute["evidence_details"]["has_evidence"] = any(v for v in merged.values())
        if "metadata" in params:
            self._merge_metadata(dispute, params["metadata"])
        submit = to_bool(params.get("submit", True), "submit")  # Stripe submits unless submit=false
        eligibility = dispute["evidence_details"].get("enhanced_eligibility") or {}
        if "visa_compelling_evidence_3" in eligibility:
            state = ce3_eligibility(merged["enhanced_evidence"].get("visa_compelling_evidence_3") or {})
            if submit:  # after submission: qualified, or not_qualified (submitted without CE 3.0)
                state = {"required_actions": [], "status": "qualified" if state["status"] == "qualified"
                         else "not_qualified"}
            eligibility["visa_compelling_evidence_3"] = state
        if submit:
            dispute["evidence_details"]["submission_count"] += 1
            dispute["evidence_details"]["submission_method"] = "manual"
            dispute["status"] = "under_review" if dispute["status"] == "needs_response" else "warning_under_review"
        self.emit_update("charge.dispute.updated", dispute, before, created=now)
        if submit:
            all_text = " ".join(str(v) for v in merged.values() if v)
            # Stripe decides test-mode disputes shortly after submission, by the evidence text.
            customer_id = self.objects["charge"][dispute["charge"]].get("customer")
            if "winning_evidence" in all_text:
                self.later(0.2, lambda: self._close_dispute(dispute, "won", self.now_for(customer_id)))
            elif "losing_evidence" in all_text:
                self.later(0.2, lambda: self._close_dispute(dispute, "lost", self.now_for(customer_id)))
            elif "escalate_inquiry_evidence" in all_text and dispute["status"] == "warning_under_review":
                self.later(0.2, lambda: self._escalate_inquiry(dispute, self.now_for(customer_id)))
        return dispute

    def escalate_inquiry(self, dispute_id: str, now: int) -> Json:
        """Test helper (/_emulator/disputes/{id}/escalate): the cardholder's bank turns an inquiry into a
        chargeback. The same dispute moves to needs_response with a new deadline (charge.dispute.updated
        with the previous status) and the funds are withdrawn with the dispute fee."""
        dispute = self.get("dispute", dispute_id, "dispute")
        if dispute["status"] not in ("warning_needs_response", "warning_under_review"):
            raise StripeApiError(400, "Only an open inquiry can become a chargeback.", code="dispute_closed")
        self._escalate_inquiry(dispute, now)
        return dispute

    def _escalate_inquiry(self, dispute: Json, now: int) -> None:
        """The inquiry becomes a chargeback (the helper above, or test mode's `escalate_inquiry_evidence`)."""
        before = self.snapshot(dispute)
        dispute["status"] = "needs_response"
        dispute["evidence_details"]["due_by"] = int(now + DISPUTE_RESPONSE_DAYS * DAY)
        dispute["evidence_details"]["submission_count"] = 0
        dispute["payment_method_details"]["card"]["case_type"] = "chargeback"
        dispute["balance_transactions"] = [self._balance_transaction(
            -dispute["amount"], dispute["currency"], now, dispute["id"], "Chargeback withdrawal", fee=DISPUTE_FEE)]
        self.emit_update("charge.dispute.updated", dispute, before, created=now)
        self.emit("charge.dispute.funds_withdrawn", dispute, created=now)

    def close_dispute(self, dispute_id: str) -> Json:
        dispute = self.get("dispute", dispute_id, "dispute")
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise StripeApiError(400, "This dispute is already closed or under review and cannot be closed.",
                                 code="dispute_closed" if dispute["status"] in ("won", "lost") else
                                 "dispute_already_submitted")
        now = self.now_for(self.objects["charge"][dispute["charge"]].get("customer"))
        self._close_dispute(dispute, "lost" if dispute["status"] == "needs_response" else "warning_closed", now)
        return dispute

    def _close_dispute(self, dispute: Json, status: str, now: int) -> None:
        before = self.snapshot(dispute)
        dispute["status"] = status
        self.emit_update("charge.dispute.closed", dispute, before, created=now, always=True)
        if status == "won":
            dispute["balance_transactions"].append(self._balance_transaction(
                dispute["amount"], dispute["currency"], now, dispute["id"], "Chargeback reversal"))
            self.emit("charge.dispute.funds_reinstated", dispute, created=now)
