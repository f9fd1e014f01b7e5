"""The /v1 routes of customers, products, prices and files."""

from __future__ import annotations

from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import StripeApiError, check_params, to_bool
from emulator.wire.routes import call, create, list_by, list_kind, public, render, retrieve, route

# --- customers ---------------------------------------------------------------------------
CUSTOMER_PARAMS = {"email", "name", "description", "phone", "metadata", "test_clock", "payment_method",
                   "invoice_settings", "address"}


create("/v1/customers", Engine.create_customer, CUSTOMER_PARAMS)


retrieve("/v1/customers/{id}", "customer")


call("POST", "/v1/customers/{id}", Engine.update_customer, CUSTOMER_PARAMS - {"test_clock", "payment_method"})


@route("DELETE", "/v1/customers/{id}")
def customers_delete(engine: Engine, m: dict[str, str], params: Json) -> Json:
    customer = engine.get("customer", m["id"], "customer")
    customer["deleted"] = True
    engine.emit("customer.deleted", customer, created=engine.now_for(None))
    return {"id": m["id"], "object": "customer", "deleted": True}


list_by("customer", "/v1/customers", ("email", "test_clock"))

# --- products and prices ------------------------------------------------------------------
create("/v1/products", Engine.create_product, {"name", "id", "active", "description", "metadata"}, ("name",))


retrieve("/v1/products/{id}", "product")


@route("POST", "/v1/products/{id}")
def products_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"name", "active", "description", "metadata"})
    product = engine.get("product", m["id"], "product")
    before = engine.snapshot(product)
    for field in ("name", "description"):
        if field in params:
            product[field] = params[field]
    if "active" in params:
        product["active"] = to_bool(params["active"], "active")
    if "metadata" in params:
        engine._merge_metadata(product, params["metadata"])
    if engine.snapshot(product) != before:
        product["updated"] = engine.now_for(None)
        engine.emit_update("product.updated", product, before, created=engine.now_for(None))
    return render(engine, product, params)


@route("GET", "/v1/products")
def products_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    active = params.get("active")
    return list_kind(engine, "product", "/v1/products", params, {"active"},
                     lambda p: active is None or p["active"] == to_bool(active, "active"))


PRICE_PARAMS = {"currency", "unit_amount", "product", "product_data", "recurring", "lookup_key", "nickname",
                "metadata", "active", "id"}


create("/v1/prices", Engine.create_price, PRICE_PARAMS, ("currency",))


retrieve("/v1/prices/{id}", "price")


@route("POST", "/v1/prices/{id}")
def prices_update(engine: Engine, m: dict[str, str], params: Json) -> Json:
    check_params(params, {"active", "metadata", "lookup_key", "nickname"})
    price = engine.get("price", m["id"], "price")
    before = engine.snapshot(price)
    if "active" in params:
        price["active"] = to_bool(params["active"], "active")
    for field in ("lookup_key", "nickname"):
        if field in params:
            price[field] = params[field] or None
    if "metadata" in params:
        engine._merge_metadata(price, params["metadata"])
    engine.emit_update("price.updated", price, before, created=engine.now_for(None))
    return render(engine, price, params)


@route("GET", "/v1/prices")
def prices_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    active = params.get("active")
    product = params.get("product")
    lookup_keys = params.get("lookup_keys") or []
    price_type = params.get("type")
    return list_kind(
        engine, "price", "/v1/prices", params, {"active", "product", "lookup_keys", "type", "currency"},
        lambda p: (active is None or p["active"] == to_bool(active, "active"))
        and (not product or p["product"] == product)
        and (not lookup_keys or p.get("lookup_key") in lookup_keys)
        and (not price_type or p["type"] == price_type),
    )


# --- files ----------------------------------------------------------------------------------------
@route("POST", "/v1/files")
def files_create(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    """Multipart upload; the server hands the file part over as (filename, bytes)."""
    check_params(params, {"file", "purpose", "file_link_data"}, ("purpose",))
    if not isinstance(params.get("file"), tuple):
        raise StripeApiError(400, "Missing required param: file.", code="parameter_missing", param="file")
    filename, content = params["file"]
    return public(engine.create_file(content, filename, str(params["purpose"])))


retrieve("/v1/files/{id}", "file")


@route("GET", "/v1/files")
def files_list(engine: Engine, _m: dict[str, str], params: Json) -> Json:
    purpose = params.get("purpose")
    return list_kind(engine, "file", "/v1/files", params, {"purpose"}, lambda f: not purpose or f["purpose"] == purpose)
