"""Global search (issue 19 part 5) in a real browser against `billing-ops demo`: the sidebar box
finds the demo's long-standing customer (the Visa CE 3.0 one) by email, by card last4 and by
amount, each hit list as long as the demo DB says; a hit opens its object's page, and that page's
URL, opened afresh, shows the same object (a shareable link)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import screenshot, sign_in, wait_until_idle

pytestmark = pytest.mark.e2e

EMAIL = "casey.longtime@customers.example"  # emulator/seed.py: the CE 3.0 customer
LAST4 = "0038"  # Stripe's CE 3.0 test card, 4000 0004 0400 0038
AMOUNT_MINOR = 29_000  # the customer's yearly top-ups


def _db(demo_server: Any) -> dict[str, Any]:
    from sqlalchemy import func, select

    from db.models import Charge, Customer, Dispute
    from db.session import UnitOfWork

    with UnitOfWork(f"sqlite:///{demo_server.data_dir}/billing_ops.db") as uow:
        session = uow.session
        customer = session.execute(select(Customer.id).where(Customer.email == EMAIL)).scalar_one()
        email_disputes = session.execute(select(func.count()).select_from(Dispute).where(
            Dispute.customer_email == EMAIL)).scalar_one()
        last4 = session.execute(select(func.count()).select_from(Charge).where(
            Charge.card_last4 == LAST4)).scalar_one()
        customer_last4 = session.execute(select(func.count()).select_from(Charge).where(
            Charge.card_last4 == LAST4, Charge.stripe_customer_id == customer)).scalar_one()
        amount = session.execute(select(func.count()).select_from(Charge).where(
            Charge.amount == AMOUNT_MINOR, Charge.currency == "usd")).scalar_one() + session.execute(
            select(func.count()).select_from(Dispute).where(Dispute.amount == AMOUNT_MINOR,
                                                            Dispute.currency == "usd")).scalar_one()
        dispute = session.execute(select(Dispute.id).where(Dispute.stripe_customer_id == customer)).scalar_one()
    return {"customer": customer, "email_hits": 1 + email_disputes, "last4_hits": last4,
            "customer_last4": customer_last4, "amount_hits": amount, "dispute": dispute}


def _search(page: Any, query: str) -> str:
    """Type into the sidebar box and wait for the Search page's hit count."""
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_role("textbox", name="Search").fill(query)
    sidebar.get_by_role("button", name="Search").click()
    page.wait_for_selector("h1:has-text('Search')", timeout=60_000)
    # The Search page's own box holds the query once it has rerun for it (not the previous hits).
    page.wait_for_function("q => document.querySelector('input[aria-label=\"Search the billing DB\"]')?.value === q",
                           arg=query, timeout=60_000)
    wait_until_idle(page)
    caption = page.get_by_text(re.compile(r"^\d+ hit\(s\)\.$")).first
    caption.wait_for(timeout=60_000)
    wait_until_idle(page)
    return str(caption.inner_text())


def _cells(page: Any, text: str) -> Any:
    return page.locator("[data-testid='stDataFrame'] [role='gridcell']", has_text=text)


def test_sidebar_search_by_email_last4_amount_and_shareable_pages(demo_server: Any, page: Any) -> None:
    db = _db(demo_server)
    assert db["customer_last4"] >= 3  # three prior payments and the disputed one
    sign_in(page, demo_server, demo_server.admin_email)

    # By email: the customer and the dispute filed on its email.
    assert _search(page, EMAIL) == f"{db['email_hits']} hit(s)."
    _cells(page, db["customer"]).first.wait_for(state="attached", timeout=30_000)
    # By last4: every charge on the card, the customer's among them.
    assert _search(page, LAST4) == f"{min(db['last4_hits'], 20)} hit(s)."
    mine = _cells(page, f"customer {db['customer']}")
    mine.nth(db["customer_last4"] - 1).wait_for(state="attached", timeout=30_000)  # the grid draws late
    assert mine.count() == db["customer_last4"]
    # By amount in currency units: charges and disputes of 290.00 USD, the customer's dispute among them.
    assert _search(page, "290.00") == f"{min(db['amount_hits'], 20)} hit(s)."
    _cells(page, db["dispute"]).first.wait_for(state="attached", timeout=30_000)
    screenshot(page, "search_by_amount")

    # The dispute hit opens the dispute; its URL, opened afresh, shows the same dispute.
    page.get_by_role("link", name=f"Open dispute {db['dispute']}").click()
    page.wait_for_selector("h1:has-text('Disputes')", timeout=120_000)
    page.wait_for_function(f"() => location.search.includes('dispute={db['dispute']}')", timeout=60_000)
    wait_until_idle(page)
    shared = page.url
    fresh = page.context.new_page()
    fresh.goto(shared)
    fresh.wait_for_selector("h1:has-text('Disputes')", timeout=120_000)
    wait_until_idle(fresh)
    fresh.wait_for_selector("text=10.4", timeout=60_000)  # the CE 3.0 dispute's network reason code
    stripe_link = fresh.get_by_role("link", name="Open in Stripe").first.get_attribute("href") or ""
    assert stripe_link.endswith(f"disputes/{db['dispute']}"), stripe_link  # the chosen dispute is the shared one
    screenshot(fresh, "search_shared_dispute")
    fresh.close()

    # The customer hit opens its page with the customer looked up; the link is shareable too.
    _search(page, EMAIL)
    page.get_by_role("link", name=f"Open customer {db['customer']}").click()
    page.wait_for_function(f"() => location.search.includes('customer={db['customer']}')", timeout=60_000)
    wait_until_idle(page)
    fresh = page.context.new_page()
    fresh.goto(page.url)
    box = fresh.get_by_role("textbox", name=re.compile("^Customer email, customer id"))
    box.wait_for(timeout=120_000)
    wait_until_idle(fresh)
    assert box.input_value() == db["customer"]
    fresh.close()
