"""Search: GET /v1/{customers,subscriptions,invoices,charges,payment_intents,prices,products}/search.

Stripe's Search Query Language (docs.stripe.com/search):
- a clause is `field`, an operator, a value: `email:'amy@rocketrides.io'`, `amount>1000`,
  `metadata['order_id']:'6735'`; string values are quoted (single or double quotes, `\\` escapes a
  quote inside), numbers may be bare;
- clauses are joined by a space or `AND` (the default) or by `OR` (keywords case-insensitive);
  AND and OR can't be mixed in one query and there are no parentheses; up to 10 clauses;
- `-` before a clause negates it;
- `:` is an exact match (case-insensitive on string fields), `~` a substring match (at least 3
  characters) on the string fields that support it, `>` `<` `>=` `<=` compare numeric fields
  (`created` included);
- `null` as a value matches a field that has no value (`-url:null`: it has one);
- only the query fields each resource documents are searchable; another field answers
  "Field `x` is an unsupported search field for resource `customers`...";
- results come as `object: search_result` with `url`, `has_more`, `next_page` (the cursor to pass
  back as `page`), newest first, `limit` 1..100 (default 10).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from emulator.engine import Engine
from emulator.state import Json
from emulator.wire.protocol import StripeApiError, check_params, to_int
from emulator.wire.routes import Handler, render, route

MAX_CLAUSES = 10
MIN_SUBSTRING = 3
PARSE_ERROR = ("We were unable to parse your search query. Try using the format `metadata[\"key\"]:\"value\"` to "
               "query for metadata or key:\"value\" to query for other fields.")

# Field types: "string" (exact, case-insensitive), "text" (a string field that also takes `~`),
# "numeric" (exact and comparators), "boolean" (exact: true/false).
_CARD = "payment_method_details.card"
FIELDS: dict[str, dict[str, str]] = {
    "customers": {"created": "numeric", "email": "text", "name": "text", "phone": "text"},
    "subscriptions": {"created": "numeric", "status": "string"},
    "invoices": {"created": "numeric", "currency": "string", "customer": "string",
                 "last_finalization_error_code": "string", "last_finalization_error_type": "string",
                 "number": "string", "receipt_number": "string", "status": "string", "subscription": "string",
                 "total": "numeric"},
    "charges": {"amount": "numeric", "billing_details.address.postal_code": "string", "created": "numeric",
                "currency": "string", "customer": "string", "disputed": "boolean", "payment_intent": "string",
                f"{_CARD}.last4": "string", f"{_CARD}.exp_month": "numeric", f"{_CARD}.exp_year": "numeric",
                f"{_CARD}.brand": "string", f"{_CARD}.fingerprint": "string", "refunded": "boolean",
                "status": "string"},
    "payment_intents": {"amount": "numeric", "created": "numeric", "currency": "string", "customer": "string",
                        "status": "string"},
    "prices": {"active": "boolean", "currency": "string", "lookup_key": "string", "product": "string",
               "type": "string"},
    "products": {"active": "boolean", "description": "text", "name": "text", "shippable": "boolean",
                 "url": "string"},
}
# Query fields that read a differently-shaped path of the object.
_PATHS = {"last_finalization_error_code": "last_finalization_error.code",
          "last_finalization_error_type": "last_finalization_error.type"}
# Per resource: since API 2025-03-31 an invoice names its subscription under `parent`.
_RESOURCE_PATHS = {("invoices", "subscription"): "parent.subscription_details.subscription"}
KINDS = {"customers": "customer", "subscriptions": "subscription", "invoices": "invoice", "charges": "charge",
         "payment_intents": "payment_intent", "prices": "price", "products": "product"}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<neg>-)?
        (?:metadata\[(?:'(?P<mk1>(?:[^'\\]|\\.)*)'|"(?P<mk2>(?:[^"\\]|\\.)*)")\]|(?P<field>[A-Za-z_][\w.]*))
        (?P<op>>=|<=|:|~|>|<)
        (?:'(?P<v1>(?:[^'\\]|\\.)*)'|"(?P<v2>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s'"]+))
    )""",
    re.X,
)
_JOIN = re.compile(r"\s+(AND|OR)\s+|\s+", re.I)


@dataclass(frozen=True)
class Clause:
    field: str  # "metadata" for metadata['key']
    key: str | None
    op: str
    value: str | None  # None for null
    quoted: bool
    negated: bool


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse(query: str) -> tuple[list[Clause], str]:
    """The clauses of `query` and how they combine ("AND" or "OR"); StripeApiError when it doesn't parse."""
    text = query.strip()
    clauses: list[Clause] = []
    joins: set[str] = set()
    pos = 0
    while True:
        found = _TOKEN.match(text, pos)
        if found is None:
            raise _error(PARSE_ERROR)
        quoted_value = found["v1"] if found["v1"] is not None else found["v2"]
        key = found["mk1"] if found["mk1"] is not None else found["mk2"]
        bare = found["bare"]
        value: str | None = _unescape(quoted_value) if quoted_value is not None else bare
        if bare is not None and bare.lower() == "null":
            value = None
        clauses.append(Clause("metadata" if key is not None else str(found["field"]),
                              _unescape(key) if key is not None else None, found["op"], value,
                              quoted_value is not None, found["neg"] is not None))
        pos = found.end()
        if pos == len(text):
            break
        join = _JOIN.match(text, pos)
        if join is None:
            raise _error(PARSE_ERROR)
        joins.add((join[1] or "AND").upper())
        pos = join.end()
    if len(joins) > 1:
        raise _error(PARSE_ERROR)
    if len(clauses) > MAX_CLAUSES:
        raise _error(PARSE_ERROR)
    return clauses, joins.pop() if joins else "AND"


def _error(message: str) -> StripeApiError:
    return StripeApiError(400, message, param="query")


def _lookup(obj: Json, path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _check(resource: str, clause: Clause) -> None:
    if clause.field == "metadata":
        if clause.op not in (":",):
            raise _error(PARSE_ERROR)
        return
    kind = FIELDS[resource].get(clause.field)
    if kind is None:
        raise _error(f"Field `{clause.field}` is an unsupported search field for resource `{resource}`. See "
                     f"http://stripe.com/docs/search#query-fields-for-{resource.replace('_', '-')} for a list of "
                     "supported fields.")
    if clause.op == "~" and (kind != "text" or clause.value is None or len(clause.value) < MIN_SUBSTRING):
        raise _error(PARSE_ERROR)
    if clause.op in (">", "<", ">=", "<="):
        if kind != "numeric" or clause.value is None:
            raise _error(PARSE_ERROR)
        try:
            int(clause.value)
        except ValueError:
            raise _error(PARSE_ERROR) from None
    if kind in ("string", "text") and clause.op == ":" and clause.value is not None and not clause.quoted:
        raise _error(PARSE_ERROR)  # Stripe: string values must be quoted


def _matches(obj: Json, clause: Clause, kind: str, resource: str) -> bool:
    if clause.field == "metadata":
        actual: Any = (obj.get("metadata") or {}).get(clause.key or "")
    else:
        path = _RESOURCE_PATHS.get((resource, clause.field)) or _PATHS.get(clause.field, clause.field)
        actual = _lookup(obj, path)
    if clause.value is None:
        hit = actual in (None, "")
    elif actual is None:
        hit = False
    elif kind == "numeric":
        want, have = int(clause.value), int(actual) if not isinstance(actual, bool) else None
        hit = have is not None and {":": have == want, ">": have > want, "<": have < want,
                                    ">=": have >= want, "<=": have <= want}[clause.op]
    elif kind == "boolean":
        hit = str(actual).lower() == clause.value.lower()
    elif clause.op == "~":
        hit = clause.value.lower() in str(actual).lower()
    else:
        hit = str(actual).lower() == clause.value.lower()
    return hit != clause.negated


def search(engine: Engine, resource: str, params: Json) -> Json:
    check_params(params, {"query", "limit", "page", "expand"}, ("query",))
    clauses, join = parse(str(params["query"]))
    for clause in clauses:
        _check(resource, clause)
    kinds = [FIELDS[resource].get(c.field, "string") for c in clauses]
    combine = all if join == "AND" else any
    found = [o for o in engine.all(KINDS[resource])
             if combine(_matches(o, c, k, resource) for c, k in zip(clauses, kinds, strict=True))]
    found.sort(key=lambda o: (o.get("created", 0), o.get("_seq", 0)), reverse=True)
    limit = to_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise StripeApiError(400, "Invalid integer: limit must be between 1 and 100",
                             code="parameter_invalid_integer", param="limit")
    start = _offset(params.get("page"))
    page = found[start:start + limit]
    more = start + limit < len(found)
    result: Json = {"object": "search_result", "url": f"/v1/{resource}/search", "has_more": more,
                    "data": page, "next_page": _cursor(start + limit) if more else None}
    listed = render(engine, {**result, "object": "list"}, params, is_list=True)
    listed["object"] = "search_result"
    return listed


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(page: Any) -> int:
    if page in (None, ""):
        return 0
    try:
        decoded = base64.urlsafe_b64decode(str(page) + "=" * (-len(str(page)) % 4)).decode()
        if decoded.startswith("offset:"):
            return max(0, int(decoded.removeprefix("offset:")))
    except (ValueError, UnicodeDecodeError):
        pass
    raise StripeApiError(400, f"Invalid page: {page}", code="parameter_invalid_string", param="page")


def _handler(resource: str) -> Handler:
    def handle(engine: Engine, _m: dict[str, str], params: Json) -> Json:
        return search(engine, resource, params)

    return handle


# `/v1/customers/search` wins over `/v1/customers/{id}`: a literal path beats a placeholder.
for _resource in FIELDS:
    route("GET", f"/v1/{_resource}/search")(_handler(_resource))

__all__ = ["FIELDS", "parse", "search"]
