"""The /v1 routes of disputes and early fraud warnings (value lists are in disputes/radar.py)."""

from __future__ import annotations

from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import check_params
from emulator.wire.routes import list_kind, render, retrieve, route

# --- disputes -----------------------------------------------------------------------------------
retrieve("/v1/disputes/{id}", "dispute")


@route("POST", "/v1/disputes/{id}")
def disputes_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"evidence", "submit", "metadata"})
    return render(engine, engine.update_dispute(m["id"], params), params)


@route("POST", "/v1/disputes/{id}/close")
def disputes_close(engine: Engine, m: dict[str, str], params: Json) -> Json:
    return render(engine, engine.close_dispute(m["id"]), params)


@route("GET", "/v1/disputes")
def disputes_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    charge = params.get("charge")
    intent = params.get("payment_intent")
    return list_kind(engine, "dispute", "/v1/disputes", params, {"charge", "payment_intent"},
                     lambda d: (not charge or d["charge"] == charge) and (not intent or d["payment_intent"] == intent))


# --- radar early fraud warnings --------------------------------------------------------------------
retrieve("/v1/radar/early_fraud_warnings/{id}", "radar.early_fraud_warning")


@route("GET", "/v1/radar/early_fraud_warnings")
def efw_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    charge = params.get("charge")
    intent = params.get("payment_intent")
    return list_kind(engine, "radar.early_fraud_warning", "/v1/radar/early_fraud_warnings", params,
                     {"charge", "payment_intent"},
                     lambda e: (not charge or e["charge"] == charge) and (not intent or e["payment_intent"] == intent))
