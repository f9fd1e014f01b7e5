"""Account settings the go-live preflight reads: Stripe Tax settings and payment method domains.

Field lists come from the pinned stripe SDK's annotated resource classes
(`stripe.tax.Settings`, `stripe.PaymentMethodDomain`), so a field the SDK adds
shows up here without a hand edit. Behaviour follows Stripe's docs: tax settings
are `pending` with `missing_fields: ["head_office"]` until a head office address
is set, then `active`; an update emits `tax.settings.updated`. A payment method
domain carries one `{status, status_details}` block per payment method that needs
a registered domain. Stripe verifies Apple Pay by fetching the domain association
file, which the emulator cannot do, so each method starts `active` and the test
helper `POST /_emulator/payment_method_domains/<id>/set` marks one `inactive`
with an error message (what Stripe reports when verification fails).
"""

from __future__ import annotations

import copy
from typing import Any

import stripe

from emulator.engine import Engine
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError, check_params, list_object, to_bool
from emulator.wire.routes import LIST_PARAMS, public, route

TAX_KIND = "tax.settings"
TAX_SINGLETON = "_account"
PMD_KIND = "payment_method_domain"
ADDRESS_FIELDS = tuple(stripe.tax.Settings.HeadOffice.Address.__annotations__)
# Every sub-object of PaymentMethodDomain with a `status` is a payment method's state on the domain.
PMD_METHODS = tuple(
    name for name, kind in stripe.PaymentMethodDomain.__annotations__.items()
    if isinstance(kind, type) and "status" in getattr(kind, "__annotations__", {})
)


# --- tax settings ------------------------------------------------------------------------------
def _tax_settings(engine: Engine) -> Json:
    store = engine.objects.setdefault(TAX_KIND, {})
    if TAX_SINGLETON not in store:
        store[TAX_SINGLETON] = {
            "id": TAX_SINGLETON,  # storage key only; Stripe's object has no id (dropped by _view)
            "object": "tax.settings",
            "defaults": {"provider": "stripe", "tax_behavior": None, "tax_code": None},
            "head_office": None,
            "livemode": False,
            "status": "pending",
            "status_details": {"pending": {"missing_fields": ["head_office"]}},
        }
    return store[TAX_SINGLETON]


def _tax_view(settings: Json) -> Json:
    return {k: v for k, v in public(settings).items() if k != "id"}


@route("GET", "/v1/tax/settings")
def tax_settings_retrieve(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"expand"})
    return _tax_view(_tax_settings(engine))


@route("POST", "/v1/tax/settings")
def tax_settings_update(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"defaults", "head_office", "expand"})
    settings = _tax_settings(engine)
    previous: Json = {}
    if "defaults" in params:
        defaults = params["defaults"] or {}
        check_params(defaults, {"tax_behavior", "tax_code"})
        behavior = defaults.get("tax_behavior")
        if behavior is not None and behavior not in ("exclusive", "inclusive", "inferred_by_currency"):
            raise StripeApiError(400, "Invalid defaults[tax_behavior]: must be one of exclusive, inclusive, or "
                                 "inferred_by_currency", code="parameter_invalid_string",
                                 param="defaults[tax_behavior]")
        previous["defaults"] = copy.deepcopy(settings["defaults"])
        settings["defaults"].update({k: defaults[k] for k in ("tax_behavior", "tax_code") if k in defaults})
    if "head_office" in params:
        address = (params["head_office"] or {}).get("address")
        if not isinstance(address, dict):
            raise StripeApiError(400, "Missing required param: head_office[address].", code="parameter_missing",
                                 param="head_office[address]")
        check_params(address, set(ADDRESS_FIELDS))
        previous["head_office"] = copy.deepcopy(settings["head_office"])
        settings["head_office"] = {"address": {field: address.get(field) or None for field in ADDRESS_FIELDS}}
    country = ((settings["head_office"] or {}).get("address") or {}).get("country")
    was = settings["status"]
    if country:
        settings["status"], settings["status_details"] = "active", {"active": {}}
    else:
        settings["status"] = "pending"
        settings["status_details"] = {"pending": {"missing_fields": ["head_office"]}}
    if was != settings["status"]:
        previous["status"] = was
    if previous:
        engine.emit("tax.settings.updated", _tax_view(settings), created=engine.now_for(None), previous=previous)
    return _tax_view(settings)


# --- payment method domains --------------------------------------------------------------------
def _method_state(active: bool, error: str | None = None) -> Json:
    if active:
        return {"status": "active", "status_details": None}
    return {"status": "inactive", "status_details": {"error_message": error or "The domain is not verified."}}


@route("POST", "/v1/payment_method_domains")
def payment_method_domains_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, {"domain_name", "enabled", "expand"}, ("domain_name",))
    name = str(params["domain_name"]).strip().lower()
    if not name or "/" in name or ":" in name or "." not in name:
        raise StripeApiError(400, "Invalid domain_name: use a bare domain such as example.com.",
                             code="parameter_invalid_string", param="domain_name")
    if any(d["domain_name"] == name for d in engine.all(PMD_KIND)):
        raise StripeApiError(400, f"The domain {name} is already registered for this account.",
                             code="resource_already_exists", param="domain_name")
    domain: Json = {"id": new_id("pmd"), "object": PMD_KIND, "created": engine.now_for(None), "domain_name": name,
                    "enabled": to_bool(params.get("enabled", True), "enabled"), "livemode": False}
    domain.update({method: _method_state(True) for method in PMD_METHODS})
    engine.put(PMD_KIND, domain)
    return public(domain)


@route("GET", "/v1/payment_method_domains/{id}")
def payment_method_domains_retrieve(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"expand"})
    return public(engine.get(PMD_KIND, m["id"], PMD_KIND))


@route("POST", "/v1/payment_method_domains/{id}")
def payment_method_domains_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"enabled", "expand"})
    domain = engine.get(PMD_KIND, m["id"], PMD_KIND)
    if "enabled" in params:
        domain["enabled"] = to_bool(params["enabled"], "enabled")
    return public(domain)


@route("POST", "/v1/payment_method_domains/{id}/validate")
def payment_method_domains_validate(engine: Engine, m: dict[str, str], params: Json) -> Json:
    # Stripe re-runs verification; in the emulator the states set by the test helper stand.
    return payment_method_domains_retrieve(engine, m, params)


@route("GET", "/v1/payment_method_domains")
def payment_method_domains_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    check_params(params, LIST_PARAMS | {"domain_name", "enabled", "expand"})
    items = engine.all(PMD_KIND)
    if params.get("domain_name"):
        items = [d for d in items if d["domain_name"] == str(params["domain_name"]).lower()]
    if "enabled" in params:
        wanted = to_bool(params["enabled"], "enabled")
        items = [d for d in items if d["enabled"] is wanted]
    listed = list_object("/v1/payment_method_domains", items, params)
    listed["data"] = [public(d) for d in listed["data"]]
    return listed


def set_domain_states(engine: Engine, domain_id: str, payload: dict[str, Any]) -> Json:
    """Test helper: `{"apple_pay": "inactive", "error_message": "..."}` (what failed verification looks like)."""
    domain = engine.get(PMD_KIND, domain_id, PMD_KIND)
    for method in PMD_METHODS:
        if method in payload:
            domain[method] = _method_state(payload[method] == "active", payload.get("error_message"))
    return public(domain)
