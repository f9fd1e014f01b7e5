"""Early fraud warnings: created on a charge, no longer actionable once it is refunded or disputed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.objects.customers import CustomersMixin
from emulator.state import Json, new_id

if TYPE_CHECKING:
    pass


class EarlyFraudWarningsMixin(CustomersMixin):
    def create_efw_for(self, charge: Json, now: int, fraud_type: str = "made_with_stolen_card") -> Json:
        efw = {
            "id": new_id("issfr"),
            "object": "radar.early_fraud_warning",
            "actionable": not charge["disputed"] and not charge["refunded"],
            "charge": charge["id"],
            "created": now,
            "fraud_type": fraud_type,
            "livemode": False,
            "payment_intent": charge.get("payment_intent"),
        }
        self.put("radar.early_fraud_warning", efw)
        self.emit("radar.early_fraud_warning.created", efw, created=now)
        return efw

    def _efw_no_longer_actionable(self, charge_id: str, now: int) -> None:
        for efw in self.all("radar.early_fraud_warning"):
            if efw["charge"] == charge_id and efw["actionable"]:
                before = self.snapshot(efw)
                efw["actionable"] = False
                self.emit_update("radar.early_fraud_warning.updated", efw, before, created=now)
