"""Request validation from the pinned `stripe` SDK: which params each endpoint accepts.

Each SDK service method names the endpoint it calls (`self._request("post",
"/v1/customers/{customer}", ...)`) and the TypedDict of the params it accepts
(`params: Optional["CustomerUpdateParams"]`), both generated from Stripe's OpenAPI spec.
`check_request` walks a request's params against that TypedDict, nested hashes and
arrays included, and refuses a name Stripe doesn't define with Stripe's
`parameter_unknown` error (`Received unknown parameter: invoice_settings[foo]`), for
form bodies and query strings alike. `check_expand` refuses an `expand` path that does
not end on an expandable field of the object (`This property cannot be expanded (x).`).
"""

from __future__ import annotations

import builtins
import functools
import importlib
import importlib.util
import pkgutil
import re
import types
import typing
from typing import Any, Union

import stripe
import typing_extensions
from stripe._request_options import RequestOptions

from emulator.objects import catalogue
from emulator.wire.protocol import StripeApiError

_METHOD = re.compile(
    r"\n    def (\w+)\((?:(?!\n    (?:async )?def ).)*?params: (?:Optional\[\s*)?\"(\w+)\""
    r"(?:(?!\n    (?:async )?def ).)*?self\._request\(\s*\"(\w+)\",\s*\"(/v1/[^\"]+)\"",
    re.S,
)
_IMPORT = re.compile(r"from (stripe\.params[\w.]*) import \(?\s*(\w+)")


@functools.cache
def _endpoints() -> list[tuple[str, re.Pattern[str], int, str, str]]:
    """(method, path pattern, placeholder count, params module, params class) for every SDK call."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for info in pkgutil.walk_packages(stripe.__path__, "stripe."):
        if not info.name.endswith("_service") or ".v2" in info.name or ".params" in info.name:
            continue
        spec = importlib.util.find_spec(info.name)
        if spec is None or spec.origin is None:
            continue
        with open(spec.origin, encoding="utf-8") as handle:
            source = handle.read()
        modules = {name: module for module, name in _IMPORT.findall(source)}
        for _name, params_class, method, path in _METHOD.findall(source):
            if params_class in modules:
                found[(method.upper(), path)] = (modules[params_class], params_class)
    table = []
    for (method, path), (module, cls) in found.items():
        holes = path.count("{")
        pattern = re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$")
        table.append((method, pattern, holes, module, cls))
    table.sort(key=lambda row: row[2])  # literal segments win over placeholders (/search before /{id})
    return table


@functools.cache
def _hints(module: str, cls_name: str) -> dict[str, Any]:
    cls = getattr(importlib.import_module(module), cls_name)
    return _typed_dict_hints(cls)


@functools.cache
def _typed_dict_hints(cls: type) -> dict[str, Any]:
    """A params TypedDict's keys and types; RequestOptions' keys (api_key, ...) are not wire params."""
    namespace = vars(importlib.import_module(cls.__module__))
    skip = set(getattr(RequestOptions, "__annotations__", {})) if cls is not RequestOptions else set()
    eval_type = getattr(typing, "_eval_type")  # noqa: B009 (resolves nested forward refs like get_type_hints)
    hints: dict[str, Any] = {}
    for name, tp in cls.__annotations__.items():
        if name in skip:
            continue
        ref = typing.ForwardRef(tp) if isinstance(tp, str) else tp
        try:
            hints[name] = eval_type(ref, namespace, _AnyNames(namespace))
        except Exception:  # noqa: BLE001 (a type the emulator can't resolve is checked no deeper)
            hints[name] = Any
    return hints


class _AnyNames(dict[str, Any]):
    """Names a params module imports only under TYPE_CHECKING resolve to Any (never a TypedDict)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        super().__init__()
        self.namespace = namespace

    def __missing__(self, key: str) -> Any:
        if key in self.namespace:
            return self.namespace[key]
        return getattr(builtins, key, Any)


def params_class(method: str, path: str) -> tuple[str, str] | None:
    for route_method, pattern, _holes, module, cls in _endpoints():
        if route_method == method and pattern.match(path):
            return module, cls
    return None


def _is_typed_dict(tp: Any) -> bool:
    return isinstance(tp, type) and typing_extensions.is_typeddict(tp)


def _strip(tp: Any) -> list[Any]:
    """The alternatives of a param's type, NotRequired/Union unwrapped."""
    origin = typing.get_origin(tp)
    if origin in (typing.NotRequired, typing.Required):
        return _strip(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_strip(arg))
        return out
    return [tp]


def _unknown(value: Any, tp: Any, name: str) -> str | None:
    """The first param name under `name` that `tp` doesn't define, or None."""
    options = _strip(tp)
    if isinstance(value, dict):
        dicts = [t for t in options if _is_typed_dict(t)]
        if dicts:
            problems = [_unknown_keys(value, t, name) for t in dicts]
            return None if any(p is None for p in problems) else problems[0]
        return None  # a free-form hash (metadata) or a type the emulator doesn't check deeper
    if isinstance(value, list):
        lists = [typing.get_args(t)[0] for t in options if typing.get_origin(t) is list and typing.get_args(t)]
        for index, item in enumerate(value):
            for item_type in lists[:1]:
                problem = _unknown(item, item_type, f"{name}[{index}]")
                if problem:
                    return problem
    return None


def _unknown_keys(value: dict[str, Any], typed_dict: type, prefix: str) -> str | None:
    hints = _typed_dict_hints(typed_dict)
    for key, item in value.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in hints:
            return name
        problem = _unknown(item, hints[key], name)
        if problem:
            return problem
    return None


def check_request(method: str, path: str, params: dict[str, Any]) -> None:
    """Refuse a param the SDK's definition of this endpoint doesn't have (parameter_unknown)."""
    found = params_class(method, path)
    if found is None:
        return
    hints = _hints(*found)
    for key, value in params.items():
        if key not in hints:
            raise unknown_parameter(key)
        problem = _unknown(value, hints[key], key)
        if problem:
            raise unknown_parameter(problem)


def unknown_parameter(name: str) -> StripeApiError:
    return StripeApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


# --- expand ---------------------------------------------------------------------------------
def _cannot_expand(segment: str, hint: str = "") -> StripeApiError:
    return StripeApiError(400, f"This property cannot be expanded ({segment}).{hint}")


def check_expand(object_name: str | None, paths: list[str], *, is_list: bool = False) -> None:
    """Every path must walk the object's fields and end on one Stripe lets you expand."""
    for path in paths:
        parts = path.split(".")
        if is_list:
            if parts[0] != "data":
                raise _cannot_expand(parts[0], f" You may want to try expanding 'data.{path}' instead.")
            parts = parts[1:]
        if len(parts) > 4:
            raise StripeApiError(400, "You cannot expand more than 4 levels of a property.", param="expand")
        if object_name is None or not parts:
            continue
        spec = catalogue.spec_for(object_name)
        if spec is None:
            continue
        _walk(spec.fields, parts)


def _walk(fields: dict[str, catalogue.Field], parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    field = fields.get(head)
    if field is None:
        raise _cannot_expand(head)
    if not rest:
        includable = field.kind == "list_object" and field.nullable
        expandable_list = field.kind == "list" and field.item is not None and field.item.kind == "resource" \
            and field.item.expandable
        if not (field.kind == "resource" and field.expandable) and not includable and not expandable_list:
            raise _cannot_expand(head)
        return
    if field.kind == "nested" and field.nested is not None:
        _walk(catalogue.fields_of(field.nested), rest)
        return
    if field.kind == "list_object" and rest[0] == "data":
        rest = rest[1:]
        if not rest:
            return
    elif field.kind == "list" and field.item is not None and field.item.kind == "resource":
        field = field.item
    if field.kind in ("resource", "list_object") and len(field.refs) >= 1:
        for ref in field.refs:
            spec = catalogue.spec_for(ref)
            if spec is not None:
                _walk(spec.fields, rest)
                return
    raise _cannot_expand(rest[0])
