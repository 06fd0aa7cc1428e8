"""Stripe's Billing Portal for a customer (``GET /customers/{id}/portal_url``): Billow keeps
seed 004's configuration in the account, and what a customer changes in the portal (a
card, an address) reaches Billow and the subscriptions that charge the customer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billow.domain.clock import utcnow
from tests.api.billing_helpers import (
    create_plan,
    payment_intents,
    payment_methods,
    stripe_customer,
    webhooks,
)
from tests.api.conftest import StripeOrg, new_stripe_key, stripe_client
from tests.api.test_stripe_subscription_sync import subscribe
from tests.support import http

RETURN_URL = "https://shop.example/account"


@pytest.fixture
def portal_org(local_billow: Any, org: Any) -> StripeOrg:
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": key, "portal_return_url": RETURN_URL}},
    )
    assert status == 200 and body["integration"]["portal_return_url"] == RETURN_URL, body
    return StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


def portal_url(org: Any, customer: str = "acme") -> str:
    status, body = org.api.get(f"/customers/{customer}/portal_url")
    assert status == 200, body
    url: str = body["customer"]["portal_url"]
    return url


def test_a_linked_customer_gets_a_portal_set_as_seed_004_recommends(
    local_billow: Any, portal_org: StripeOrg, wait_for: Any
) -> None:
    stripe_id = stripe_customer(portal_org, "acme", wait_for=wait_for)
    url = portal_url(portal_org)
    session_id = url.rsplit("/", 1)[-1]
    assert url.startswith(local_billow.stripe_url + "/portal/bps_")
    page = http("GET", url)[2]
    assert f'href="{RETURN_URL}"' in page

    [configuration] = portal_org.stripe.v1.billing_portal.configurations.list().data
    features = configuration.features
    assert configuration.login_page.enabled is True
    assert features.invoice_history.enabled and features.payment_method_update.enabled
    assert features.customer_update.enabled
    assert features.customer_update.allowed_updates == ["address", "phone", "tax_id"]
    assert not features.subscription_cancel.enabled and not features.subscription_update.enabled

    # Another customer's portal reuses the configuration.
    stripe_customer(portal_org, "globex", wait_for=wait_for)
    assert portal_url(portal_org, "globex") != url
    assert len(portal_org.stripe.v1.billing_portal.configurations.list().data) == 1
    assert session_id and stripe_id


def test_customers_not_in_stripe_get_a_422_and_unknown_ones_a_404(portal_org: StripeOrg) -> None:
    status, body = portal_org.api.post("/customers", json={"customer": {"external_id": "plain"}})
    assert status == 200, body
    status, body = portal_org.api.get("/customers/plain/portal_url")
    assert status == 422 and body["error_details"] == {
        "external_customer_id": ["customer_not_in_stripe"]
    }
    assert portal_org.api.get("/customers/nobody/portal_url")[0] == 404


def test_a_connection_without_a_return_url_is_told_so(
    local_billow: Any, org: Any, wait_for: Any
) -> None:
    key = new_stripe_key()
    assert org.api.post("/integrations/stripe", json={"integration": {"secret_key": key}})[0] == 200
    plain = StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))
    stripe_customer(plain, "acme", wait_for=wait_for)
    status, body = plain.api.get("/customers/acme/portal_url")
    assert status == 422 and body["error_details"] == {"portal_return_url": ["value_is_mandatory"]}


def test_a_card_and_an_address_changed_in_the_portal_reach_billow(
    local_billow: Any, portal_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(portal_org, "pro", amount_cents=2500, pay_in_advance=True)
    stripe_id = stripe_customer(portal_org, "acme", wait_for=wait_for)
    [old_card] = payment_methods(portal_org, "acme")
    subscribe(portal_org, "acme", "pro")
    [first_charge] = wait_for(lambda: payment_intents(portal_org, stripe_id))
    assert first_charge["payment_method"] == old_card["provider_method_id"]
    url = portal_url(portal_org)

    assert http("POST", url + "/payment_method", {"card": "4242424242424242"})[0] == 303

    def new_default() -> dict[str, Any] | None:
        methods = payment_methods(portal_org, "acme")
        default = next((m for m in methods if m["is_default"]), None)
        return default if default and default["lago_id"] != old_card["lago_id"] else None

    card = wait_for(new_default)
    in_stripe = portal_org.stripe.v1.customers.retrieve(stripe_id).invoice_settings
    assert card["provider_method_id"] == in_stripe.default_payment_method

    form = {"address_line1": "5 Avenue Anatole France", "address_city": "Paris"}
    form |= {"address_postal_code": "75007", "address_country": "FR", "phone": "+33 1"}
    assert http("POST", url + "/customer", form)[0] == 303

    def moved() -> dict[str, Any] | None:
        customer = portal_org.api.get("/customers/acme")[1]["customer"]
        return customer if customer["zipcode"] == "75007" else None

    customer = wait_for(moved)
    assert (customer["address_line1"], customer["city"], customer["country"]) == (
        "5 Avenue Anatole France",
        "Paris",
        "FR",
    )
    wait_for(
        lambda: [
            body
            for body in webhooks(subscribed, "customer.updated")
            if body["customer"]["zipcode"] == "75007"
        ]
    )

    # The subscription charges the customer's default: its next invoice goes on the new card.
    local_billow.fire_schedule("billing-run", utcnow() + timedelta(days=32))
    local_billow.wait_idle()
    [renewal] = [
        intent
        for intent in payment_intents(portal_org, stripe_id)
        if intent["id"] != first_charge["id"]
    ]
    assert (renewal["payment_method"], renewal["status"]) == (
        card["provider_method_id"],
        "succeeded",
    )
