"""Global search (issue 19 part 5) over the billing DB on SQLite and PostgreSQL: by id,
email prefix (any case), card last4, amount in currency units and part of a name; bounded,
hostile input harmless, each hit naming the page that opens it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from db.models import Charge, Customer, Dispute, FraudWarning, Invoice, UserSubscription
from db.session import UnitOfWork
from services import search


@pytest.fixture
def seeded(migrated_url: str) -> str:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    with UnitOfWork(migrated_url) as uow:
        uow.session.add_all([
            Customer(id="cus_ada", email="ada@example.com", name="Ada Lovelace"),
            Customer(id="cus_bob", email="bob@example.org", name="Bob 100% Builder_"),
            Customer(id="cus_jp", email="kenji@example.jp", name="Kenji"),
            UserSubscription(stripe_subscription_id="sub_ada", stripe_customer_id="cus_ada", status="active",
                             plan="pro", interval="monthly"),
            Invoice(id="in_ada", stripe_customer_id="cus_ada", status="open", amount_due=2900, currency="usd"),
            Charge(id="ch_ada", stripe_customer_id="cus_ada", amount=2900, currency="usd", card_brand="visa",
                   card_last4="4242", status="succeeded", created=at),
            Charge(id="ch_jp", stripe_customer_id="cus_jp", amount=2900, currency="jpy", card_brand="visa",
                   card_last4="0005", status="succeeded", created=at),
            Dispute(id="dp_ada", charge_id="ch_ada", stripe_customer_id="cus_ada", customer_email="ada@example.com",
                    amount=2900, currency="usd", reason="fraudulent", status="needs_response"),
            FraudWarning(id="issfr_ada", charge_id="ch_ada", stripe_customer_id="cus_ada",
                         customer_email="ada@example.com", amount=2900, currency="usd", status="open",
                         fraud_type="made_with_stolen_card", actionable=True, created=at),
        ])
        uow.commit()
    return migrated_url


def _find(url: str, query: str) -> list[tuple[str, str]]:
    return [(hit.kind, hit.id) for hit in search.search(UnitOfWork(url), query)]


@pytest.mark.parametrize(("query", "expected"), [
    ("cus_ada", ("customer", "cus_ada")), ("sub_ada", ("subscription", "sub_ada")),
    ("in_ada", ("invoice", "in_ada")), ("ch_ada", ("charge", "ch_ada")), ("dp_ada", ("dispute", "dp_ada")),
    ("issfr_ada", ("fraud_warning", "issfr_ada")),
])
def test_an_id_finds_its_object_and_the_page_that_opens_it(seeded: str, query: str,
                                                            expected: tuple[str, str]) -> None:
    hits = search.search(UnitOfWork(seeded), query)
    assert [(h.kind, h.id) for h in hits] == [expected]
    assert hits[0].page and list(hits[0].query_params.values()) == [query]


def test_email_prefix_in_any_case(seeded: str) -> None:
    assert ("customer", "cus_ada") in _find(seeded, "ADA@example")
    assert ("dispute", "dp_ada") in _find(seeded, "ada@")
    assert _find(seeded, "nobody@example.com") == []


def test_last4_and_amounts_in_currency_units(seeded: str) -> None:
    assert _find(seeded, "4242") == [("charge", "ch_ada")]
    by_amount = _find(seeded, "29.00")
    assert ("charge", "ch_ada") in by_amount and ("dispute", "dp_ada") in by_amount
    assert ("charge", "ch_jp") not in by_amount  # 29.00 is 2900 minor units of USD, never 2,900 JPY's 29.00
    assert _find(seeded, "2900") == [("charge", "ch_jp")]  # 2,900 JPY (2,900.00 USD would be 290000)
    hit = search.search(UnitOfWork(seeded), "4242")[0]
    assert hit.title == "29.00 USD · visa ····4242"


def test_part_of_a_name_with_like_wildcards_taken_literally(seeded: str) -> None:
    assert _find(seeded, "lovelace") == [("customer", "cus_ada")]
    assert _find(seeded, "100%") == [("customer", "cus_bob")]
    assert _find(seeded, "_") == []  # one character: too short to scan for
    assert _find(seeded, "r_") == [("customer", "cus_bob")]  # "_" is not a wildcard


def test_a_word_that_is_an_email_prefix_and_a_name_finds_both(seeded: str) -> None:
    with UnitOfWork(seeded) as uow:
        uow.session.add(Customer(id="cus_adams", email="b.adams@example.net", name="Grace Adams"))
        uow.commit()
    found = _find(seeded, "ada")
    assert found[0] == ("customer", "cus_ada")  # the email match first
    assert ("customer", "cus_adams") in found  # and the name, not only when no email matched
    assert found.count(("customer", "cus_ada")) == 1  # Ada is also a name match: listed once


def test_hostile_or_huge_input_is_one_clear_refusal(seeded: str) -> None:
    assert _find(seeded, "   ") == []
    assert _find(seeded, "'; DROP TABLE customers; --") == []
    with pytest.raises(search.SearchError, match="at most 200 characters"):
        search.search(UnitOfWork(seeded), "x" * 10_000)
    assert ("customer", "cus_ada") in _find(seeded, "cus_ada")  # nothing was harmed
