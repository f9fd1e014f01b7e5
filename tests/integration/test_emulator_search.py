"""Contract tests through the real stripe SDK: the search endpoints and Stripe's search query
language (exact, AND/OR, negation, comparators, metadata, substring, null, pagination, errors).

Emulator only: Stripe's search index lags writes by up to a minute ("don't use search in
read-after-write flows"), so these read-right-after-write checks can't run unchanged on test mode."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.conftest import EmulatorHandle


@pytest.fixture
def client(emulator: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_search", base_addresses={"api": emulator.base_url}, max_network_retries=0)


def _ids(result: Any) -> set[str]:
    return {o.id for o in result.data}


def test_customer_search_language(client: stripe.StripeClient) -> None:
    amy = client.v1.customers.create({"email": "amy@rocketrides.io", "name": "Amy Pond",
                                      "metadata": {"tier": "gold"}})
    bob = client.v1.customers.create({"email": "bob@example.com", "name": "Bob Lane", "metadata": {"tier": "free"}})
    cat = client.v1.customers.create({"email": "cat@example.com", "name": "Cat"})

    exact = client.v1.customers.search({"query": "email:'amy@rocketrides.io'"})
    assert (exact.object, exact.url, exact.has_more, exact.next_page) == ("search_result", "/v1/customers/search",
                                                                          False, None)
    assert _ids(exact) == {amy.id} and exact.data[0].object == "customer"
    assert _ids(client.v1.customers.search({"query": 'email:"AMY@rocketrides.io"'})) == {amy.id}
    assert _ids(client.v1.customers.search({"query": "metadata['tier']:'gold'"})) == {amy.id}
    assert _ids(client.v1.customers.search({"query": "-metadata['tier']:'gold'"})) == {bob.id, cat.id}
    assert _ids(client.v1.customers.search({"query": "email~'example.com'"})) == {bob.id, cat.id}
    assert _ids(client.v1.customers.search({"query": "email~'example.com' AND -name:'Cat'"})) == {bob.id}
    assert _ids(client.v1.customers.search({"query": "name:'Cat' OR name:'Amy Pond'"})) == {amy.id, cat.id}
    assert _ids(client.v1.customers.search({"query": "email~'example.com' name:'bob lane'"})) == {bob.id}
    assert _ids(client.v1.customers.search({"query": "metadata['tier']:null"})) == {cat.id}
    assert _ids(client.v1.customers.search({"query": f"created>={amy.created}"})) == {amy.id, bob.id, cat.id}
    assert _ids(client.v1.customers.search({"query": f"created<{amy.created}"})) == set()


def test_search_syntax_and_field_errors(client: stripe.StripeClient) -> None:
    client.v1.customers.create({"email": "amy@rocketrides.io"})
    for query in ("asdf", "email:'a' AND name:'b' OR name:'c'", "email~'am'", "created>'x'", "name>3",
                  " AND ".join(["email:'a'"] * 11)):
        with pytest.raises(stripe.InvalidRequestError) as bad:
            client.v1.customers.search({"query": query})
        assert bad.value.http_status == 400
        assert str(bad.value.user_message).startswith("We were unable to parse your search query."), query
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.products.search({"query": "foo:'bar'"})
    assert "Field `foo` is an unsupported search field for resource `products`." in str(unknown.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as not_searchable:
        client.v1.customers.search({"query": "description:'x'"})  # on the object, but not a query field
    assert "unsupported search field for resource `customers`" in str(not_searchable.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.search({})  # type: ignore[typeddict-item]
    assert missing.value.param == "query"


def test_search_pagination_and_every_resource(client: stripe.StripeClient) -> None:
    for n in range(5):
        client.v1.customers.create({"email": f"user{n}@example.com", "metadata": {"batch": "a"}})
    first = client.v1.customers.search({"query": "metadata['batch']:'a'", "limit": 2})
    assert first.has_more is True and len(first.data) == 2 and first.next_page
    second = client.v1.customers.search({"query": "metadata['batch']:'a'", "limit": 2, "page": first.next_page})
    assert not _ids(first) & _ids(second)
    everyone = [c.id for c in client.v1.customers.search({"query": "metadata['batch']:'a'",
                                                          "limit": 2}).auto_paging_iter()]
    assert len(everyone) == len(set(everyone)) == 5

    product = client.v1.products.create({"name": "Pro plan", "description": "Everything", "metadata": {"k": "v"}})
    client.v1.products.create({"name": "Basic", "active": False})
    assert _ids(client.v1.products.search({"query": "name~'pro' AND active:'true'"})) == {product.id}
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 2900, "product": product.id,
                                     "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"})
    assert _ids(client.v1.prices.search({"query": f"product:'{product.id}' AND type:'recurring'"})) == {price.id}
    assert _ids(client.v1.prices.search({"query": "lookup_key:'pro_monthly'"})) == {price.id}

    customer = client.v1.customers.create({"email": "payer@example.com", "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    intent = client.v1.payment_intents.create({"amount": 2000, "currency": "usd", "customer": customer.id,
                                               "payment_method": "pm_card_visa", "confirm": True,
                                               "metadata": {"order": "42"},
                                               "automatic_payment_methods": {"enabled": True,
                                                                             "allow_redirects": "never"}})
    assert _ids(client.v1.payment_intents.search({"query": "metadata['order']:'42' AND amount>1000"})) == {intent.id}
    assert _ids(client.v1.payment_intents.search({"query": "-currency:'usd'"})) == set()
    charges = client.v1.charges.search({"query": "payment_method_details.card.last4:'4242' AND amount:2000"})
    assert [c.payment_intent for c in charges.data] == [intent.id]
    assert _ids(client.v1.charges.search({"query": "refunded:'true'"})) == set()

    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}],
                                                   "metadata": {"plan": "pro"}})
    assert _ids(client.v1.subscriptions.search({"query": "status:'active' AND metadata['plan']:'pro'"})) == {
        subscription.id}
    invoices = client.v1.invoices.search({"query": f"subscription:'{subscription.id}' AND total>=2900"})
    assert [i.parent.subscription_details.subscription for i in invoices.data] == [subscription.id]
    assert _ids(client.v1.invoices.search({"query": "status:'draft'"})) == set()
