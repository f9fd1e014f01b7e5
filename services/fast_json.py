"""JSON text for bulk inserts that bind JSON columns as text (one encoder for the inbox and the
metric points): orjson, with the standard library for anything orjson cannot encode."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)
