"""The first-24h board's launch figures (Numzy §13) per role, against the emulator: an admin reads
the success rate, downgrades applied vs due and the plan-change errors, and marks one resolved with a
note; signed-out users and non-admins see none of it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db.models import ChangeErrorResolution
from services import audit
from tests.conftest import app_test_for, assert_page_hides, page_text
from tests.integration.test_launch_figures import figures_world  # noqa: F401 (fixture)


@pytest.fixture
def migrated_url(migrated_sqlite_url: str) -> str:  # AppTest: SQLite only
    return migrated_sqlite_url


@pytest.mark.parametrize("role", ["signed_out", "non_admin"])
def test_others_see_no_launch_figures(shell_runtime: Any, role: str) -> None:
    assert_page_hides("first_24h", role, words=["Launch figures"], buttons=["Mark resolved"])


def test_admin_reads_the_figures_and_resolves_an_error(figures_world: dict[str, Any]) -> None:  # noqa: F811
    rt, failing = figures_world["rt"], figures_world["failing"]["id"]
    with rt.uow() as uow:
        row = audit.record(uow, actor="cron", action="reconcile.apply_downgrade", result="error", target=failing,
                           error="The card was declined.")
        uow.commit()
    at = app_test_for("first_24h", "admin", timeout=60)
    assert not at.exception
    values = {x.label: x.value for x in at.metric}
    assert values["Checkout completed / created"] == "1 / 2 (50 %)"
    assert values["Subscriptions active / created"] == "2 / 3 (67 %)"
    assert values["Downgrades applied / due"] == "0 / 0"
    assert values["Plan-change errors open"] == "1 of 1"
    incomplete = next(df.value for df in at.dataframe if "started" in df.value.columns)
    assert list(incomplete["subscription"]) == [failing]
    errors = next(df.value for df in at.dataframe if "error" in df.value.columns)
    assert list(errors["error"]) == ["The card was declined."] and list(errors["email"]) == ["fails@example.com"]
    next(t for t in at.text_input if t.label.startswith("How it was resolved")).input("Card updated, re-applied")
    next(b for b in at.button if b.label == "Mark resolved").click()
    at.run()
    assert not at.exception
    assert "marked resolved" in page_text(at)
    assert {x.label: x.value for x in at.metric}["Plan-change errors open"] == "0 of 1"
    with rt.uow() as uow:
        saved = uow.session.execute(select(ChangeErrorResolution)).scalar_one()
        assert (saved.audit_id, saved.note, saved.resolved_by) == (row.id, "Card updated, re-applied",
                                                                   "admin@example.com")
