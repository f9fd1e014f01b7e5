"""JSON text for bulk inserts that bind JSON columns as text (one encoder for the inbox and the
metric points), and decoding a JSON column read as text (the worker's claimed payloads): orjson,
with the standard library for anything orjson cannot encode or decode."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def loads_text(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. NaN, which the standard library writes and reads
        return json.loads(text)
