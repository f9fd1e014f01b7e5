"""The Search page and the sidebar search box per role: admins find objects by id, email,
last4, amount or name and get a link to each object's page; nobody else sees it."""

from __future__ import annotations

from typing import Any

from db.models import Charge, Customer
from tests.conftest import app_test_for, page_direct_test, page_text, unescape_markdown

HOSTILE = "![x](http://evil.test/p.png) [re-verify](http://evil.test/login)"


def _seed(runtime: Any) -> None:
    with runtime.uow() as uow:
        uow.session.add_all([Customer(id="cus_ada", email="ada@example.com", name=HOSTILE),
                             Charge(id="ch_ada", stripe_customer_id="cus_ada", amount=2900, currency="usd",
                                    card_brand="visa", card_last4="4242", status="succeeded")])
        uow.commit()


def test_signed_out_and_non_admin_get_no_search(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    for role in ("signed_out", "non_admin"):
        at = page_direct_test("search", role)
        assert "Search" not in [t.value for t in at.title]
        assert "cus_ada" not in page_text(at)
        assert not at.dataframe


def test_admin_searches_from_the_sidebar_and_opens_the_hit(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    at = app_test_for(None, "admin")
    box = next(t for t in at.sidebar.text_input if t.label == "Search")
    box.input("ADA@example.com")
    next(b for b in at.sidebar.button if b.label == "Search").click()
    at.run()
    assert not at.exception
    assert at.query_params.get("q") in (["ADA@example.com"], "ADA@example.com")
    frame = at.dataframe[0].value
    assert list(frame["id"]) == ["cus_ada"] and list(frame["title"]) == [HOSTILE]  # plain text in a table
    links = list(at.get("page_link"))
    assert links and unescape_markdown(links[0].proto.label) == "Open customer cus_ada"
    assert links[0].proto.page == "plan-changes" and links[0].proto.query_string == "customer=cus_ada"


def test_admin_finds_a_charge_by_last4_and_by_amount(shell_runtime: Any) -> None:
    _seed(shell_runtime)
    at = app_test_for("search", "admin")
    field = next(t for t in at.text_input if t.label == "Search the billing DB")
    field.input("4242").run()
    assert "29.00 USD · visa ····4242" in page_text(at)
    field = next(t for t in at.text_input if t.label == "Search the billing DB")
    field.input("29.00").run()
    assert "ch_ada" in page_text(at)
    field = next(t for t in at.text_input if t.label == "Search the billing DB")
    field.input("x" * 300).run()
    assert "at most 200 characters" in page_text(at)
