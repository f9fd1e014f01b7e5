"""The /v1 route registry and what every handler shares: rendering (private keys dropped, `expand`),
`created` filters, list endpoints, plain retrieves.

A request goes to the matching route with the fewest `{id}` placeholders (a literal path such as
`/v1/invoices/create_preview` or `/v1/customers/search` wins over `/{id}`), so the order modules
register in doesn't matter; a second route for the same method and pattern is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from emulator.engine import Engine
from emulator.objects import validation
from emulator.state import Json
from emulator.wire.protocol import StripeApiError, check_params, created_bounds, expand, list_object

Handler = Callable[[Engine, dict[str, str], Json], Json]
# (method, pattern, handler, number of {id} placeholders) in registration order.
ROUTES: list[tuple[str, re.Pattern[str], Handler, int]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        compiled = re.compile("^" + pattern.replace("{id}", r"(?P<id>[^/]+)") + "$")
        if any(m == method and p.pattern == compiled.pattern for m, p, _h, _n in ROUTES):
            raise ValueError(f"a second route for {method} {pattern}")
        ROUTES.append((method, compiled, handler, pattern.count("{id}")))
        return handler

    return register


def retrieve(pattern: str, kind: str, name: str | None = None) -> Handler:
    """GET `pattern`: the stored object of `kind` (404 naming it `name`), rendered with its expansions."""

    def handler(engine: Engine, m: dict[str, str], params: Json) -> Json:
        return render(engine, engine.get(kind, m["id"], name or kind), params)

    return route("GET", pattern)(handler)


def public(obj: Json) -> Json:
    """Drop the emulator's private bookkeeping (keys starting with _) recursively."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def render(engine: Engine, obj: Json, params: Json, *, is_list: bool = False) -> Json:
    paths = params.get("expand") or []
    if not isinstance(paths, list):
        raise StripeApiError(400, "Invalid array", code="parameter_invalid_empty", param="expand")
    if is_list:
        first = obj["data"][0] if obj.get("data") else None
        validation.check_expand(first.get("object") if isinstance(first, dict) else None, paths, is_list=True)
        paths = [p.removeprefix("data.") for p in paths if p.startswith("data.")]
        data = [expand(public(item), paths, engine.find) for item in obj["data"]]
        if paths:  # an expanded object still holds its private keys
            return public({**obj, "data": data})
        return {k: data if k == "data" else public(v) for k, v in obj.items() if not k.startswith("_")}
    validation.check_expand(obj.get("object"), paths)
    return public(expand(public(obj), paths, lambda object_id: public(engine.find(object_id) or {}) or None))


def created_filter(items: list[Json], value: Any, field: str = "created") -> list[Json]:
    bounds = created_bounds(value, field)
    if bounds is None:
        return items
    return [
        i for i in items
        if ("gt" not in bounds or i[field] > bounds["gt"]) and ("gte" not in bounds or i[field] >= bounds["gte"])
        and ("lt" not in bounds or i[field] < bounds["lt"]) and ("lte" not in bounds or i[field] <= bounds["lte"])
    ]


LIST_PARAMS = {"limit", "starting_after", "ending_before", "created"}


def list_kind(engine: Engine, kind: str, url: str, params: Json, allowed: set[str],
              keep: Callable[[Json], bool] = lambda _o: True) -> Json:
    """A list endpoint over the stored objects of `kind` that `keep` accepts (and `created` bounds)."""
    check_params(params, LIST_PARAMS | allowed)
    items = [o for o in engine.all(kind) if keep(o)]
    items = created_filter(items, params.get("created"))
    return render(engine, list_object(url, items, params), params, is_list=True)


def create(pattern: str, do: Callable[[Engine, Json], Json], allowed: set[str],
           required: tuple[str, ...] = ()) -> Handler:
    """POST `pattern`: the params checked (`allowed`, `required`), the engine creates the object, rendered."""

    def handler(engine: Engine, _m: dict[str, str], params: Json) -> Json:
        check_params(params, allowed, required)
        return render(engine, do(engine, params), params)

    return route("POST", pattern)(handler)


def call(method: str, pattern: str, do: Callable[[Engine, str, Json], Json],
         allowed: set[str] | None = None) -> Handler:
    """`method pattern`: one engine call on the object the path names (its params checked against
    `allowed` first, when given), the result rendered with its expansions."""

    def handler(engine: Engine, m: dict[str, str], params: Json) -> Json:
        if allowed is not None:
            check_params(params, allowed)
        return render(engine, do(engine, m["id"], params), params)

    return route(method, pattern)(handler)


def list_by(kind: str, url: str, filters: tuple[str, ...], also: frozenset[str] = frozenset()) -> Handler:
    """GET `url`: the objects of `kind` whose fields equal the filter params given (each optional);
    `also` names further params the endpoint accepts."""

    def handler(engine: Engine, _m: dict[str, str], params: Json) -> Json:
        wanted = {name: params.get(name) for name in filters}
        return list_kind(engine, kind, url, params, set(filters) | also,
                         lambda obj: all(not value or obj.get(name) == value for name, value in wanted.items()))

    return route("GET", url)(handler)


def match_route(method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
    best: tuple[int, Handler, dict[str, str]] | None = None
    for route_method, pattern, handler, placeholders in ROUTES:
        if route_method == method and (best is None or placeholders < best[0]):
            found = pattern.match(path)
            if found:
                best = (placeholders, handler, found.groupdict())
    return (best[1], best[2]) if best else None


def known_path(path: str) -> bool:
    return any(pattern.match(path) for _m, pattern, _h, _n in ROUTES)
