"""CSV downloads: one function builds every CSV the console offers, with spreadsheet formula
injection neutralised (OWASP / ASVS 1.2.10): a text cell starting with =, +, -, @, a tab, a
carriage return or NUL gets a leading single quote, so Excel, LibreOffice and Sheets show it
as text instead of evaluating it. Quoting follows RFC 4180 (the csv module's)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")


def neutralise_cell(value: str) -> str:
    """`value` as a spreadsheet shows it literally: a formula trigger first gets a quote before it."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):  # real numbers stay numbers (a negative amount is no formula)
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        value = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return neutralise_cell(str(value))


def csv_bytes(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> bytes:
    """UTF-8 CSV of `rows` (columns: `columns`, or the first row's keys), every text cell neutralised."""
    rows = list(rows)
    header = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_cell(name) for name in header])
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in header])
    return buffer.getvalue().encode("utf-8")
