"""The emulator's Billing Portal: configurations and sessions as Stripe answers them, and
the hosted page, whose changes emit the events Stripe emits."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.emulator.test_checkout_subscriptions import monthly_price, subscription_session
from tests.emulator.test_stripe_emulator import SUCCEEDS, Account, wait_for
from tests.support import http

SEED_004 = {
    "invoice_history": {"enabled": True},
    "customer_update": {"enabled": True, "allowed_updates": ["address", "phone", "tax_id"]},
    "payment_method_update": {"enabled": True},
    "subscription_cancel": {"enabled": False},
    "subscription_update": {"enabled": False},
}


def test_configurations_are_kept_and_checked_as_stripe_does(account: Account) -> None:
    portal = account.client.v1.billing_portal
    first = portal.configurations.create({"features": SEED_004, "login_page": {"enabled": True}})
    assert first.id.startswith("bpc_") and first.is_default and first.active
    features = first.features
    assert features.customer_update.allowed_updates == ["address", "phone", "tax_id"]
    assert features.subscription_cancel.mode == "at_period_end"
    assert first.login_page.url.startswith(account.url + "/portal/login/")
    second = portal.configurations.create({"features": {"invoice_history": {"enabled": True}}})
    assert not second.is_default and second.features.payment_method_update.enabled is False
    updated = portal.configurations.update(second.id, {"default_return_url": "https://x.test/"})
    assert updated.default_return_url == "https://x.test/"
    [default] = portal.configurations.list({"is_default": True}).data
    assert default.id == first.id
    with pytest.raises(stripe.InvalidRequestError) as refused:
        portal.configurations.create(
            {"features": {"customer_update": {"enabled": True, "allowed_updates": ["pets"]}}}
        )
    assert refused.value.param == "features[customer_update][allowed_updates][0]"


def test_sessions_need_a_customer_and_somewhere_to_return_to(account: Account) -> None:
    portal = account.client.v1.billing_portal
    customer = account.client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as refused:
        portal.sessions.create({"customer": customer.id})
    assert refused.value.param == "return_url"
    with pytest.raises(stripe.InvalidRequestError):
        portal.sessions.create({"customer": "cus_nobody", "return_url": "https://x.test/"})
    # No configuration yet: Stripe's default one is made.
    session = portal.sessions.create({"customer": customer.id, "return_url": "https://x.test/"})
    assert session.url == f"{account.url}/portal/{session.id}"
    assert portal.configurations.retrieve(session.configuration).is_default
    assert http("GET", f"{account.url}/portal/bps_nothing")[0] == 404


def open_portal(account: Account, customer: str, features: dict[str, Any] = SEED_004) -> Any:
    portal = account.client.v1.billing_portal
    configuration = portal.configurations.create({"features": features})
    return portal.sessions.create(
        {"customer": customer, "configuration": configuration.id, "return_url": "https://x.test/"}
    )


def test_the_page_lists_invoices_and_changes_the_card_and_address(account: Account) -> None:
    receiver = account.listen()
    price = monthly_price(account)
    customer = account.client.v1.customers.create({"name": "Acme"})
    paid = subscription_session(account, customer.id, price.id)
    assert http("POST", paid.url, {"card": SUCCEEDS})[0] == 303
    done = account.client.v1.checkout.sessions.retrieve(paid.id)
    invoice = account.client.v1.invoices.retrieve(done.invoice)
    old_card = account.client.v1.subscriptions.retrieve(done.subscription).default_payment_method

    session = open_portal(account, customer.id)
    status, _, page = http("GET", session.url)
    assert status == 200 and invoice.number in page and "49.00 EUR" in page
    assert 'href="https://x.test/"' in page

    assert http("POST", session.url + "/payment_method", {"card": SUCCEEDS})[0] == 303
    new_card = account.client.v1.customers.retrieve(customer.id).invoice_settings
    assert new_card.default_payment_method not in (None, old_card)
    sub = account.client.v1.subscriptions.retrieve(done.subscription)
    assert sub.default_payment_method == new_card.default_payment_method

    address = {"address_line1": "1 Main St", "address_city": "Austin"}
    address |= {"address_postal_code": "78701", "address_country": "us", "phone": "+1 512"}
    assert http("POST", session.url + "/customer", address)[0] == 303
    kept = account.client.v1.customers.retrieve(customer.id)
    assert (kept.address.line1, kept.address.country, kept.phone) == ("1 Main St", "US", "+1 512")
    assert http("POST", session.url + "/customer", address)[0] == 303  # unchanged: no event

    def updates() -> list[Any]:
        return [e for e in receiver.events("customer.updated") if e["data"]["object"]["address"]]

    [moved] = wait_for(updates)
    assert set(moved["data"]["previous_attributes"]) == {"address", "phone"}
    types = [event["type"] for event in receiver.events()]
    for expected in ("setup_intent.succeeded", "payment_method.attached"):
        assert expected in types
    assert types.count("customer.subscription.updated") == 1


def test_what_the_configuration_turns_off_is_not_offered(account: Account) -> None:
    customer = account.client.v1.customers.create({"phone": "+1 1"})
    session = open_portal(
        account,
        customer.id,
        {"customer_update": {"enabled": True, "allowed_updates": ["address"]}},
    )
    page = http("GET", session.url)[2]
    assert 'name="address_line1"' in page
    assert 'name="phone"' not in page and "Invoice history" not in page
    assert "Add a card" not in page
    assert http("POST", session.url + "/payment_method", {"card": SUCCEEDS})[0] == 403
    form = {"address_line1": "1 Main St", "address_country": "US", "phone": "+1 2"}
    http("POST", session.url + "/customer", form)
    assert account.client.v1.customers.retrieve(customer.id).phone == "+1 1"
