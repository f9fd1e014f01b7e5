"""Stripe's wire format: bracketed form params, error JSON, list objects, expand."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

_KEY_PART = re.compile(r"\[([^\]]*)\]")


class StripeApiError(Exception):
    """Raised by handlers; rendered as Stripe's error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param
        if decline_code:
            self.body["decline_code"] = decline_code
        if extra:
            self.body.update(extra)

    @property
    def failed_validation(self) -> bool:
        """A bad or unknown param (or an id that names nothing): the endpoint never began executing."""
        code = str(self.body.get("code") or "")
        return self.status in (400, 404) and (code.startswith("parameter") or code == "resource_missing")


def missing(object_name: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404, f"No such {object_name}: '{object_id}'", code="resource_missing", param=param
    )


def _listify(node: Any) -> Any:
    """Turn dicts whose keys are all 0..n-1 into lists (items[0][price] -> items: [...])."""
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(node, list):
        return [_listify(v) for v in node]
    return node


def parse_form(body: str) -> dict[str, Any]:
    """Parse `a[b][0][c]=1&expand[]=x` into nested dicts and lists, as Stripe does."""
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        head = raw_key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(raw_key[len(head):])]
        node: Any = result
        for index, part in enumerate(parts):
            if index == len(parts) - 1:
                if part == "":
                    node.append(value)
                else:
                    node[part] = value
                break
            container: type = list if parts[index + 1] == "" else dict
            if part == "":
                child = container()
                node.append(child)
            else:
                child = node.get(part)
                if not isinstance(child, container):
                    child = node[part] = container()
            node = child
    listified: dict[str, Any] = _listify(result)
    return listified


def to_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "1"):
        return True
    if value in ("false", "False", "0"):
        return False
    raise StripeApiError(400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=param)


def to_int(value: Any, param: str, *, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StripeApiError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None
    if minimum is not None and number < minimum:
        raise StripeApiError(
            400, f"This value must be greater than or equal to {minimum}.", code="parameter_invalid_integer",
            param=param,
        )
    return number


def created_bounds(value: Any, field: str = "created") -> dict[str, int] | None:
    """A `created`-style param as bounds (gt/gte/lt/lte; an exact value is gte and lte), None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, dict):
        bounds = {op: to_int(v, f"{field}[{op}]") for op, v in value.items()}
        for op in bounds:
            if op not in ("gt", "gte", "lt", "lte"):
                raise StripeApiError(400, f"Received unknown parameter: {field}[{op}]", code="parameter_unknown",
                                     param=f"{field}[{op}]")
        return bounds
    exact = to_int(value, field)
    return {"gte": exact, "lte": exact}


def check_params(params: dict[str, Any], allowed: set[str], required: tuple[str, ...] = ()) -> None:
    """Unknown top-level params -> parameter_unknown; missing required -> parameter_missing."""
    for name in params:
        if name not in allowed and name not in ("expand",):
            raise StripeApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
    for name in required:
        if params.get(name) in (None, ""):
            raise StripeApiError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)


def list_object(
    url: str, items: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """Paginate newest-first like Stripe: limit 1..100, starting_after/ending_before."""
    limit = to_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise StripeApiError(
            400, "Invalid integer: limit must be between 1 and 100", code="parameter_invalid_integer", param="limit"
        )
    ordered = sorted(items, key=lambda o: (o.get("created", 0), o.get("_seq", 0)), reverse=True)
    ids = [o["id"] for o in ordered]
    starting_after = params.get("starting_after")
    ending_before = params.get("ending_before")
    if starting_after:
        if starting_after not in ids:
            raise missing("object", starting_after, "starting_after")
        start = ids.index(starting_after) + 1
        page = ordered[start : start + limit]
        has_more = start + limit < len(ordered)
    elif ending_before:
        if ending_before not in ids:
            raise missing("object", ending_before, "ending_before")
        end = ids.index(ending_before)
        page = ordered[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page = ordered[:limit]
        has_more = len(ordered) > limit
    return {"object": "list", "url": url, "has_more": has_more, "data": page}


def expand(obj: Any, paths: list[str], resolve: Callable[[str], dict[str, Any] | None]) -> Any:
    """Replace id strings at the given dotted paths with their objects (nested paths allowed)."""
    for path in paths:
        obj = _expand_path(obj, path.split("."), resolve)
    return obj


def _expand_path(node: Any, parts: list[str], resolve: Callable[[str], dict[str, Any] | None]) -> Any:
    if not parts:
        return node
    if isinstance(node, list):
        return [_expand_path(item, parts, resolve) for item in node]
    if not isinstance(node, dict):
        return node
    head, rest = parts[0], parts[1:]
    if head not in node:
        return node
    value = node[head]
    if isinstance(value, str):
        resolved = resolve(value)
        value = dict(resolved) if resolved is not None else value
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        # A list of expandable ids (a subscription's or an invoice's `discounts`).
        value = [dict(found) if (found := resolve(item)) is not None else item for item in value]
    node = dict(node)
    node[head] = _expand_path(value, rest, resolve)
    return node


def one_of(value: str, allowed: tuple[str, ...], param: str) -> str:
    """`value` if it is one of `allowed`, else Stripe's 400 for an enum param."""
    if value not in allowed:
        raise StripeApiError(400, f"Invalid {param}: must be one of {', '.join(allowed)}",
                             code="parameter_invalid_string", param=param)
    return value
