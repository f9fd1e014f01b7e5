"""Every Stripe object's fields, derived from the pinned `stripe` SDK's type annotations.

The SDK's resource classes are generated from Stripe's OpenAPI spec for the pinned API
version, so their annotations are Stripe's own machine-readable definition of each
object: `Optional[...]` marks a nullable field, `Literal[...]` an enum, `ExpandableField`
(a `Union[str, "Resource"]`) an expandable id, and nested `StripeObject` classes the
nested hashes. Nothing here is typed by hand: `catalogue()` walks the SDK's modules once
(on first use) and builds a `Spec` per object name.

`conform(obj)` makes an emulator object carry exactly its catalogue's fields: missing
fields are added (null where nullable, else the type's zero value or a nested object
filled the same way), fields Stripe does not define are dropped, and nested hashes,
lists and expanded objects are conformed recursively. `validate(obj)` counts, for a wire
object, how many defined fields are present with the right type and enum.
"""

from __future__ import annotations

import decimal
import functools
import importlib
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ForwardRef, Literal, Union

import stripe
from stripe._list_object import ListObject
from stripe._search_result_object import SearchResultObject
from stripe._stripe_object import StripeObject, UntypedStripeObject

Json = dict[str, Any]

# Fields present only on some responses (Stripe omits them otherwise): `deleted` only on a
# deleted object's stub; a webhook endpoint's `secret` only in the response that created it.
OMIT_UNLESS_SET = frozenset({"deleted"})
OMIT_UNLESS_SET_BY_OBJECT = {"webhook_endpoint": frozenset({"secret"})}


@dataclass
class Field:
    """One field: `kind` is str|int|float|bool|enum|any|map|list|list_object|nested|resource."""

    kind: str
    nullable: bool = False
    enum: tuple[str, ...] = ()
    expandable: bool = False
    refs: tuple[str, ...] = ()  # object names a resource / expandable / list item may be
    nested: type | None = None  # the SDK's nested StripeObject class (kind nested)
    item: Field | None = None  # element of list / map

    def describe(self) -> Json:
        out: Json = {"kind": self.kind, "nullable": self.nullable}
        if self.enum:
            out["enum"] = list(self.enum)
        if self.expandable:
            out["expandable"] = True
        if self.refs:
            out["refs"] = list(self.refs)
        if self.item is not None:
            out["item"] = self.item.describe()
        if self.nested is not None:
            out["fields"] = {name: f.describe() for name, f in fields_of(self.nested).items()}
        return out


@dataclass
class Spec:
    object_name: str
    cls: type
    fields: dict[str, Field] = field(default_factory=dict)


_SKIP_MODULE_PARTS = ("params", "v2", "_service", "api_resources", "_http_client", "_oauth")


def _is_resource(cls: Any) -> bool:
    return (isinstance(cls, type) and issubclass(cls, StripeObject) and isinstance(cls.__dict__.get("OBJECT_NAME"), str)
            and cls not in (ListObject, SearchResultObject))


@functools.cache
def _resource_classes() -> tuple[type, ...]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(stripe.__path__, "stripe."):
        if any(part in info.name for part in _SKIP_MODULE_PARTS):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001, S112 (an SDK module that needs an optional dependency)
            continue
        for value in vars(module).values():
            if _is_resource(value) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return tuple(found.values())


@functools.cache
def _by_object_name() -> dict[str, type]:
    table: dict[str, type] = {}
    for cls in sorted(_resource_classes(), key=lambda c: (c.__module__.count("."), c.__module__)):
        table.setdefault(str(cls.__dict__["OBJECT_NAME"]), cls)
    return table


def _resolve_forward(name: str, owner: type) -> type | None:
    """A quoted class name in `owner`'s module: the resource class of that name, nearest package first."""
    candidates = [c for c in _resource_classes() if c.__name__ == name]
    if not candidates:
        return None
    package = owner.__module__.rsplit(".", 1)[0]
    candidates.sort(key=lambda c: (c.__module__.rsplit(".", 1)[0] != package, c.__module__.count(".")))
    return candidates[0]


def _object_names(types_: list[Any], owner: type) -> tuple[str, ...]:
    names = []
    flat: list[Any] = []
    for tp in types_:
        flat.extend(typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else [tp])
    for tp in flat:
        cls = _resolve_forward(tp.__forward_arg__, owner) if isinstance(tp, ForwardRef) else tp
        if _is_resource(cls):
            names.append(str(cls.__dict__["OBJECT_NAME"]))
    return tuple(names)


def _field_for(tp: Any, owner: type) -> Field:
    nullable = False
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = list(typing.get_args(tp))
        if type(None) in args:
            nullable = True
            args = [a for a in args if a is not type(None)]
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if literals:
            values = tuple(v for lit in literals for v in typing.get_args(lit))
            if all(isinstance(v, bool) for v in values):
                return Field("bool", nullable)
            return Field("enum", nullable, enum=tuple(str(v) for v in values))
        refs = [a for a in args if a is not str]
        if str in args and refs:
            return Field("resource", nullable, expandable=True, refs=_object_names(refs, owner))
        if len(args) == 1:
            inner = _field_for(args[0], owner)
            inner.nullable = nullable or inner.nullable
            return inner
        return Field("resource", nullable, refs=_object_names(args, owner))
    if origin is Literal:
        values = typing.get_args(tp)
        if all(isinstance(v, bool) for v in values):
            return Field("bool", nullable)
        return Field("enum", enum=tuple(str(v) for v in values))
    if origin is list:
        return Field("list", item=_field_for(typing.get_args(tp)[0], owner))
    if origin is dict:
        return Field("map", item=_field_for(typing.get_args(tp)[1], owner))
    if origin is ListObject or origin is SearchResultObject:
        return Field("list_object", refs=_object_names(list(typing.get_args(tp)), owner))
    if origin is UntypedStripeObject:
        return Field("map", item=_field_for(typing.get_args(tp)[0], owner))
    if isinstance(tp, (ForwardRef, str)):
        resolved = _resolve_forward(tp.__forward_arg__ if isinstance(tp, ForwardRef) else tp, owner)
        return Field("resource", refs=_object_names([resolved], owner)) if resolved else Field("any")
    if tp is bool:
        return Field("bool")
    if tp is int:
        return Field("int")
    if tp is float:
        return Field("float")
    if tp is str or tp is decimal.Decimal:  # decimals travel as strings ("1000.5")
        return Field("str")
    if _is_resource(tp):
        return Field("resource", refs=(str(tp.__dict__["OBJECT_NAME"]),))
    if isinstance(tp, type) and issubclass(tp, StripeObject):
        return Field("nested", nested=tp)
    return Field("any")


@functools.cache
def fields_of(cls: type) -> dict[str, Field]:
    annotations = cls.__dict__.get("__annotations__", {})
    out: dict[str, Field] = {}
    for name, tp in annotations.items():
        if name.startswith("_") or typing.get_origin(tp) is typing.ClassVar or name == "OBJECT_NAME":
            continue
        out[name] = _field_for(tp, cls)
    return out


@functools.cache
def catalogue() -> dict[str, Spec]:
    return {name: Spec(name, cls, fields_of(cls)) for name, cls in _by_object_name().items()}


def spec_for(object_name: str) -> Spec | None:
    return catalogue().get(object_name)


def describe(object_name: str) -> Json:
    spec = spec_for(object_name)
    return {} if spec is None else {name: f.describe() for name, f in spec.fields.items()}


# --- conform: what the emulator sends ------------------------------------------------------
def _zero(f: Field) -> Any:
    if f.nullable:
        return None
    if f.kind == "bool":
        return False
    if f.kind == "int":
        return 0
    if f.kind == "float":
        return 0.0
    if f.kind == "str":
        return ""
    if f.kind == "enum":
        return f.enum[0]
    if f.kind == "list":
        return []
    if f.kind == "map":
        return {}
    if f.kind == "list_object":
        return {"object": "list", "data": [], "has_more": False, "url": ""}
    if f.kind == "nested" and f.nested is not None:
        return _zero_nested(f.nested)
    return None


@functools.cache
def _zero_nested(cls: type) -> Json:
    """A nested hash with every field at its zero value; shared, so conform's output is read-only."""
    return _conform_fields({}, fields_of(cls))


def _conform_value(value: Any, f: Field) -> Any:
    if value is None:
        return None
    if f.kind == "nested" and f.nested is not None and isinstance(value, dict):
        return _conform_fields(value, fields_of(f.nested))
    if f.kind == "list" and isinstance(value, list) and f.item is not None:
        return [_conform_value(v, f.item) for v in value]
    if f.kind == "map" and isinstance(value, dict) and f.item is not None and f.item.kind != "any":
        return {k: _conform_value(v, f.item) for k, v in value.items()}
    if f.kind == "list_object" and isinstance(value, dict):
        out = dict(value)
        out["data"] = [conform(v) if isinstance(v, dict) else v for v in value.get("data") or []]
        return {k: v for k, v in out.items() if not k.startswith("_")}
    if f.kind == "resource" and isinstance(value, dict):
        return conform(value)
    if f.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _conform_fields(obj: Json, fields: dict[str, Field], omit: frozenset[str] = OMIT_UNLESS_SET) -> Json:
    out: Json = {}
    for name, f in fields.items():
        if name in obj:
            out[name] = _conform_value(obj[name], f)
        elif name not in omit:
            out[name] = _zero(f)
    return out


def conform(obj: Json) -> Json:
    """`obj` with exactly the fields its object type defines (by its `object` value).

    The result is for sending (or snapshotting) and must not be mutated: zero-filled nested
    hashes are shared between results."""
    kind = obj.get("object")
    if kind in ("list", "search_result"):
        out = {k: v for k, v in obj.items() if not k.startswith("_")}
        out["data"] = [conform(v) if isinstance(v, dict) else v for v in obj.get("data") or []]
        return out
    if obj.get("deleted") is True:
        return {k: v for k, v in obj.items() if k in ("id", "object", "deleted")}
    spec = spec_for(str(kind)) if isinstance(kind, str) else None
    if spec is None:
        return {k: v for k, v in obj.items() if not k.startswith("_")}
    out = _conform_fields(obj, spec.fields, OMIT_UNLESS_SET | OMIT_UNLESS_SET_BY_OBJECT.get(str(kind), frozenset()))
    if kind == "event" and isinstance(out.get("data"), dict):
        data = dict(out["data"])
        if isinstance(data.get("object"), dict):
            had_id = "id" in data["object"]
            data["object"] = conform(data["object"])
            if out.get("type") == "invoice.upcoming" and not had_id:
                data["object"].pop("id", None)  # Stripe: the upcoming invoice has no id
        out["data"] = data
    return out


# --- validate: what a client receives ------------------------------------------------------------
@dataclass
class Report:
    objects: int = 0
    fields: int = 0
    good: int = 0
    problems: list[str] = field(default_factory=list)
    by_object: dict[str, list[int]] = field(default_factory=dict)

    @property
    def percent(self) -> float:
        return 100.0 * self.good / self.fields if self.fields else 100.0

    def add(self, other: Report) -> None:
        self.objects += other.objects
        self.fields += other.fields
        self.good += other.good
        self.problems.extend(other.problems)
        for name, (good, total) in other.by_object.items():
            entry = self.by_object.setdefault(name, [0, 0])
            entry[0] += good
            entry[1] += total

    def kinds(self, prefix: str) -> list[str]:
        return [p for p in self.problems if p.startswith(prefix)]


def _value_ok(value: Any, f: Field, path: str, report: Report, owner: str) -> str | None:
    """None when `value` fits `f`; else the problem's kind (null|type|enum)."""
    if value is None:
        return None if f.nullable else "null"
    kind = f.kind
    if kind == "bool":
        return None if isinstance(value, bool) else "type"
    if kind == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "type"
    if kind == "float":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "type"
    if kind == "str":
        return None if isinstance(value, str) else "type"
    if kind == "enum":
        if not isinstance(value, str):
            return "type"
        return None if value in f.enum else "enum"
    if kind == "list":
        if not isinstance(value, list):
            return "type"
        for index, item in enumerate(value):
            if f.item is not None:
                problem = _value_ok(item, f.item, f"{path}[{index}]", report, owner)
                if problem:
                    return problem
        return None
    if kind == "map":
        if not isinstance(value, dict):
            return "type"
        if f.item is not None and f.item.kind != "any":
            for key, item in value.items():
                problem = _value_ok(item, f.item, f"{path}.{key}", report, owner)
                if problem:
                    return problem
        return None
    if kind == "list_object":
        if not isinstance(value, dict) or value.get("object") not in ("list", "search_result") or \
                not isinstance(value.get("data"), list):
            return "type"
        for item in value["data"]:
            if isinstance(item, dict):
                _validate_into(item, report, f"{path}.data")
        return None
    if kind == "resource":
        if isinstance(value, str):
            return None if f.expandable else "type"
        if not isinstance(value, dict):
            return "type"
        if f.refs and value.get("object") not in f.refs:
            return "type"
        _validate_into(value, report, path)
        return None
    if kind == "nested" and f.nested is not None:
        if not isinstance(value, dict):
            return "type"
        _validate_fields(value, fields_of(f.nested), report, path, owner)
        return None
    return None


def _validate_fields(obj: Json, fields: dict[str, Field], report: Report, path: str, owner: str) -> None:
    entry = report.by_object.setdefault(owner, [0, 0])
    omit = OMIT_UNLESS_SET | OMIT_UNLESS_SET_BY_OBJECT.get(owner, frozenset())
    for name, f in fields.items():
        if name in omit and name not in obj:
            continue
        report.fields += 1
        entry[1] += 1
        where = f"{path}.{name}"
        if name not in obj:
            report.problems.append(f"missing {owner}: {where}")
            continue
        problem = _value_ok(obj[name], f, where, report, owner)
        if problem:
            report.problems.append(f"{problem} {owner}: {where} = {str(obj[name])[:60]!r}")
        else:
            report.good += 1
            entry[0] += 1
    for name in obj:
        if name not in fields:
            report.problems.append(f"unknown {owner}: {path}.{name}")


def _validate_into(obj: Json, report: Report, path: str) -> None:
    kind = obj.get("object")
    if kind in ("list", "search_result"):
        for item in obj.get("data") or []:
            if isinstance(item, dict):
                _validate_into(item, report, f"{path}.data")
        return
    if obj.get("deleted") is True:
        return
    spec = spec_for(str(kind)) if isinstance(kind, str) else None
    if spec is None:
        report.problems.append(f"unknown-object {kind}: {path}")
        return
    report.objects += 1
    _validate_fields(obj, spec.fields, report, path or str(kind), str(kind))
    if kind == "event":
        data = obj.get("data")
        if isinstance(data, dict) and isinstance(data.get("object"), dict):
            _validate_into(data["object"], report, f"{path}.data.object")


def validate(obj: Json) -> Report:
    """How many of the fields Stripe defines `obj` (and everything nested in it) carries, correctly typed."""
    report = Report()
    _validate_into(obj, report, "")
    return report
