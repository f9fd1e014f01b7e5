"""The /v1 routes of disputes and early fraud warnings (value lists are in disputes/radar.py)."""

from __future__ import annotations

from emulator.engine import Engine
from emulator.wire.routes import call, list_by, retrieve

# --- disputes -----------------------------------------------------------------------------------
retrieve("/v1/disputes/{id}", "dispute")


call("POST", "/v1/disputes/{id}", Engine.update_dispute, {"evidence", "submit", "metadata"})


call("POST", "/v1/disputes/{id}/close", lambda engine, object_id, _params: engine.close_dispute(object_id))


list_by("dispute", "/v1/disputes", ("charge", "payment_intent"))

# --- radar early fraud warnings --------------------------------------------------------------------
retrieve("/v1/radar/early_fraud_warnings/{id}", "radar.early_fraud_warning")


list_by("radar.early_fraud_warning", "/v1/radar/early_fraud_warnings", ("charge", "payment_intent"))
