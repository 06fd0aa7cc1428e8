"""Customers through the Lago API, kept in step with Stripe (the emulator)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.api.conftest import (
    StripeOrg,
    another_stripe_org,
    attach_card,
    new_stripe_key,
    revoke_stripe_key,
)


def webhooks(receiver: Any, webhook_type: str) -> list[dict[str, Any]]:
    bodies = [json.loads(request.body) for request in receiver.requests]
    return [body for body in bodies if body["webhook_type"] == webhook_type]


def test_create_customer_returns_lago_object_and_announces_it(
    org: Any, subscribed: Any, wait_for: Any
) -> None:
    status, body = org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "cust-1",
                "name": "Gavin Belson",
                "email": "gavin@hooli.test",
                "country": "US",
                "currency": "USD",
                "timezone": "America/Los_Angeles",
                "metadata": [{"key": "tier", "value": "gold", "display_in_invoice": True}],
            }
        },
    )
    assert status == 200, body
    customer = body["customer"]
    assert customer["external_id"] == "cust-1"
    assert customer["sequential_id"] == 1
    assert customer["applicable_timezone"] == "America/Los_Angeles"
    assert customer["billing_configuration"]["payment_provider"] is None
    assert customer["metadata"][0]["key"] == "tier"
    for field in ("lago_id", "slug", "created_at", "updated_at", "taxes", "integration_customers"):
        assert field in customer

    wait_for(lambda: webhooks(subscribed, "customer.created"))
    created = webhooks(subscribed, "customer.created")[0]
    assert created["object_type"] == "customer"
    assert created["organization_id"] == org.id
    assert created["customer"]["lago_id"] == customer["lago_id"]


def test_posting_an_existing_external_id_updates_it(
    org: Any, subscribed: Any, wait_for: Any
) -> None:
    first = org.api.post("/customers", json={"customer": {"external_id": "c", "name": "Old"}})[1]
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "c", "city": "Paris"}}
    )
    assert status == 200
    assert body["customer"]["lago_id"] == first["customer"]["lago_id"]
    assert body["customer"]["name"] == "Old"
    assert body["customer"]["city"] == "Paris"
    wait_for(lambda: webhooks(subscribed, "customer.updated"))
    assert webhooks(subscribed, "customer.updated")[0]["customer"]["city"] == "Paris"


def test_list_paginates_with_lago_meta_and_delete_removes(org: Any) -> None:
    for index in range(3):
        assert org.api.post("/customers", json={"customer": {"external_id": f"p{index}"}})[0] == 200
    status, body = org.api.get("/customers?page=2&per_page=2")
    assert status == 200
    assert len(body["customers"]) == 1
    assert body["meta"] == {
        "current_page": 2,
        "next_page": None,
        "prev_page": 1,
        "total_pages": 2,
        "total_count": 3,
    }
    status, body = org.api.delete("/customers/p1")
    assert status == 200 and body["customer"]["external_id"] == "p1"
    assert org.api.get("/customers/p1")[0] == 404
    assert org.api.get("/customers")[1]["meta"]["total_count"] == 2


def test_new_customer_is_created_in_stripe_inline(
    stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    status, body = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "sync-1",
                "name": "Dinesh",
                "email": "dinesh@piedpiper.test, ops@piedpiper.test",
                "address_line1": "5230 Penfield Ave",
                "city": "Woodland Hills",
                "zipcode": "91364",
                "country": "US",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "sync": True,
                    "sync_with_provider": True,
                },
            }
        },
    )
    assert status == 200, body
    billing = body["customer"]["billing_configuration"]
    assert billing["payment_provider_code"] == "stripe"
    stripe_id = billing["provider_customer_id"]
    assert stripe_id and stripe_id.startswith("cus_")

    in_stripe = stripe_org.stripe.v1.customers.retrieve(stripe_id)
    assert in_stripe.name == "Dinesh"
    assert in_stripe.email == "dinesh@piedpiper.test"
    assert in_stripe.metadata["lago_customer_id"] == body["customer"]["lago_id"]
    assert in_stripe.metadata["customer_id"] == "sync-1"

    wait_for(lambda: webhooks(subscribed, "customer.checkout_url_generated"))
    created = webhooks(subscribed, "customer.payment_provider_created")[0]
    assert created["customer"]["billing_configuration"]["provider_customer_id"] == stripe_id
    checkout = webhooks(subscribed, "customer.checkout_url_generated")[0]
    assert checkout["object_type"] == "payment_provider_customer_checkout_url"
    details = checkout["payment_provider_customer_checkout_url"]
    assert details["external_customer_id"] == "sync-1"
    assert details["payment_provider"] == "stripe"
    assert details["checkout_url"].startswith("http")


def test_new_customer_is_created_in_stripe_asynchronously(
    stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    status, body = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "async-1",
                "name": "Jared",
                "billing_configuration": {"payment_provider": "stripe", "sync_with_provider": True},
            }
        },
    )
    assert status == 200
    assert body["customer"]["billing_configuration"]["provider_customer_id"] is None

    def linked() -> str | None:
        customer = stripe_org.api.get("/customers/async-1")[1]["customer"]
        return customer["billing_configuration"]["provider_customer_id"]  # type: ignore[no-any-return]

    stripe_id = wait_for(linked)
    assert stripe_org.stripe.v1.customers.retrieve(stripe_id).name == "Jared"
    wait_for(lambda: webhooks(subscribed, "customer.checkout_url_generated"))
    assert len(webhooks(subscribed, "customer.payment_provider_created")) == 1


def test_connection_option_creates_customers_unless_they_opt_out(
    local_billow: Any, org: Any, wait_for: Any
) -> None:
    assert (
        org.api.post(
            "/integrations/stripe",
            json={"integration": {"secret_key": new_stripe_key(), "create_customers": True}},
        )[0]
        == 200
    )
    stripe_billing = {"payment_provider": "stripe", "sync": True}
    created = org.api.post(
        "/customers",
        json={"customer": {"external_id": "auto", "billing_configuration": stripe_billing}},
    )[1]
    assert created["customer"]["billing_configuration"]["provider_customer_id"]
    # Unsaid, it followed the connection, and says so as the boolean Lago's contract has.
    assert created["customer"]["billing_configuration"]["sync_with_provider"] is True
    opted_out = org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "manual",
                "billing_configuration": {**stripe_billing, "sync_with_provider": False},
            }
        },
    )[1]
    assert opted_out["customer"]["billing_configuration"]["provider_customer_id"] is None
    assert opted_out["customer"]["billing_configuration"]["sync_with_provider"] is False


def test_existing_stripe_customer_is_linked_with_its_default_card(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    client = stripe_org.stripe
    existing = client.v1.customers.create(params={"name": "Existing"})
    card_id = attach_card(client, existing.id, default=True)
    before = len(client.v1.customers.list(params={"limit": 100}).data)

    status, body = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "migrated",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "provider_customer_id": existing.id,
                    "sync_with_provider": False,
                },
            }
        },
    )
    assert status == 200
    assert body["customer"]["billing_configuration"]["provider_customer_id"] == existing.id

    def methods() -> list[dict[str, Any]]:
        return stripe_org.api.get("/customers/migrated/payment_methods")[1]["payment_methods"]  # type: ignore[no-any-return]

    found = wait_for(methods)
    assert found[0]["provider_method_id"] == card_id
    assert found[0]["is_default"] is True
    assert found[0]["payment_provider_type"] == "stripe"
    assert len(client.v1.customers.list(params={"limit": 100}).data) == before
    local_billow.wait_idle()
    assert webhooks(subscribed, "customer.checkout_url_generated") == []


def test_customer_updates_reach_stripe(stripe_org: StripeOrg, wait_for: Any) -> None:
    billing = {"payment_provider": "stripe", "sync": True, "sync_with_provider": True}
    body = stripe_org.api.post(
        "/customers",
        json={"customer": {"external_id": "u", "name": "Before", "billing_configuration": billing}},
    )[1]
    stripe_id = body["customer"]["billing_configuration"]["provider_customer_id"]
    assert (
        stripe_org.api.post("/customers", json={"customer": {"external_id": "u", "name": "After"}})[
            0
        ]
        == 200
    )
    wait_for(lambda: stripe_org.stripe.v1.customers.retrieve(stripe_id).name == "After")


def link(org: Any, external_id: str, stripe_id: str, sync: bool = True) -> tuple[int, Any]:
    """Create or update a Billow customer linked to an existing Stripe customer."""
    billing = {"payment_provider": "stripe", "provider_customer_id": stripe_id, "sync": sync}
    return org.api.post(
        "/customers",
        json={"customer": {"external_id": external_id, "billing_configuration": billing}},
    )


def third_party_error(code: str, message: str) -> dict[str, Any]:
    """Lago's 422 for Stripe refusing the Stripe customer named by provider_customer_id."""
    return {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "third_party_error",
        "error_details": {
            "provider_customer_id": [code],
            "third_party": "stripe",
            "thirdparty_error": message,
        },
    }


@pytest.mark.parametrize("sync", [True, False])
def test_a_stripe_customer_of_another_account_cannot_be_linked(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, sync: bool
) -> None:
    other = another_stripe_org(local_billow)
    theirs = other.stripe.v1.customers.create(params={"name": "Theirs"})

    status, body = link(stripe_org, "poacher", theirs.id, sync)
    assert (status, body) == (
        422,
        third_party_error("resource_missing", f"No such customer: '{theirs.id}'"),
    )
    assert stripe_org.api.get("/customers/poacher")[0] == 404
    assert stripe_org.api.get("/customers")[1]["customers"] == []
    local_billow.wait_idle()
    assert subscribed.requests == []
    # In its own organization the same Stripe customer links.
    status, body = link(other, "rightful", theirs.id, sync)
    assert status == 200
    assert body["customer"]["billing_configuration"]["provider_customer_id"] == theirs.id


def test_relinking_to_another_accounts_stripe_customer_keeps_the_link(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any
) -> None:
    mine = stripe_org.stripe.v1.customers.create(params={"name": "Mine"})
    assert link(stripe_org, "kept", mine.id)[0] == 200
    theirs = another_stripe_org(local_billow).stripe.v1.customers.create()

    status, body = link(stripe_org, "kept", theirs.id)
    assert (status, body["code"]) == (422, "third_party_error")
    customer = stripe_org.api.get("/customers/kept")[1]["customer"]
    assert customer["billing_configuration"]["provider_customer_id"] == mine.id
    local_billow.wait_idle()
    sent = [json.loads(request.body)["webhook_type"] for request in subscribed.requests]
    assert sent == ["customer.created"]


def test_a_deleted_stripe_customer_cannot_be_linked(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any
) -> None:
    gone = stripe_org.stripe.v1.customers.create(params={"name": "Gone"})
    stripe_org.stripe.v1.customers.delete(gone.id)

    status, body = link(stripe_org, "late", gone.id)
    assert (status, body) == (
        422,
        third_party_error("customer_deleted", f"The Stripe customer '{gone.id}' is deleted."),
    )
    assert stripe_org.api.get("/customers/late")[0] == 404
    local_billow.wait_idle()
    assert subscribed.requests == []


def test_linking_while_stripe_is_down_is_a_503_and_stores_nothing(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    mine = stripe_org.stripe.v1.customers.create()
    fault = {
        "api_key": stripe_org.secret_key,
        "path_prefix": f"/v1/customers/{mine.id}",
        "status": "503",
        "count": "4",  # the first try and the SDK's three retries
    }
    data = urllib.parse.urlencode(fault).encode()
    urllib.request.urlopen(f"{local_billow.stripe_url}/_config/faults", data=data)

    status, body = link(stripe_org, "later", mine.id)
    assert (status, body["code"]) == (503, "provider_unavailable")
    assert stripe_org.api.get("/customers/later")[0] == 404
    assert link(stripe_org, "later", mine.id)[0] == 200  # Stripe is back


def test_checkout_url_endpoint_and_hosted_page_save_a_default_card(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    billing = {"payment_provider": "stripe", "sync": True, "sync_with_provider": True}
    body = stripe_org.api.post(
        "/customers", json={"customer": {"external_id": "buyer", "billing_configuration": billing}}
    )[1]
    stripe_id = body["customer"]["billing_configuration"]["provider_customer_id"]

    status, body = stripe_org.api.post("/customers/buyer/checkout_url")
    assert status == 200, body
    url = body["customer"]["checkout_url"]
    assert body["customer"]["external_customer_id"] == "buyer"

    page = urllib.request.urlopen(url).read().decode()
    assert "4242424242424242" in page
    form = urllib.parse.urlencode({"card": "4242424242424242"}).encode()
    urllib.request.urlopen(urllib.request.Request(url, data=form, method="POST"))

    def default_method() -> dict[str, Any] | None:
        found = stripe_org.api.get("/customers/buyer/payment_methods")[1]["payment_methods"]
        return next((method for method in found if method["is_default"]), None)

    method = wait_for(default_method)
    in_stripe = stripe_org.stripe.v1.customers.retrieve(stripe_id)
    assert in_stripe.invoice_settings.default_payment_method == method["provider_method_id"]
    local_billow.wait_idle()
    assert len(stripe_org.api.get("/customers/buyer/payment_methods")[1]["payment_methods"]) == 1


def test_checkout_url_needs_a_stripe_customer(org: Any) -> None:
    assert org.api.post("/customers", json={"customer": {"external_id": "plain"}})[0] == 200
    status, body = org.api.post("/customers/plain/checkout_url")
    assert status == 422
    assert body["code"] == "missing_payment_provider_customer"
    assert org.api.post("/customers/nobody/checkout_url")[0] == 404


def test_payment_methods_default_delete_and_stripe_detach(
    stripe_org: StripeOrg, wait_for: Any
) -> None:
    client = stripe_org.stripe
    existing = client.v1.customers.create(params={"name": "Two cards"})
    cards = [
        attach_card(client, existing.id, "4242424242424242", default=True),
        attach_card(client, existing.id, "4000000000000341"),
    ]
    stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "two",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "provider_customer_id": existing.id,
                    "sync": True,
                },
            }
        },
    )
    # A second card made default in Stripe arrives through customer.updated.
    client.v1.customers.update(
        existing.id, params={"invoice_settings": {"default_payment_method": cards[1]}}
    )

    def listed() -> list[dict[str, Any]] | None:
        found = stripe_org.api.get("/customers/two/payment_methods")[1]["payment_methods"]
        return found if len(found) == 2 else None

    methods = wait_for(listed)
    by_stripe_id = {method["provider_method_id"]: method for method in methods}
    assert by_stripe_id[cards[1]]["is_default"] is True
    first = by_stripe_id[cards[0]]

    status, body = stripe_org.api.put(
        f"/customers/two/payment_methods/{first['lago_id']}/set_as_default"
    )
    assert status == 200 and body["payment_method"]["is_default"] is True
    defaults = [
        m
        for m in stripe_org.api.get("/customers/two/payment_methods")[1]["payment_methods"]
        if m["is_default"]
    ]
    assert [m["lago_id"] for m in defaults] == [first["lago_id"]]

    status, body = stripe_org.api.delete(f"/customers/two/payment_methods/{first['lago_id']}")
    assert status == 200 and body["payment_method"]["lago_id"] == first["lago_id"]
    assert stripe_org.api.delete(f"/customers/two/payment_methods/{first['lago_id']}")[0] == 404

    client.v1.payment_methods.detach(cards[1])
    wait_for(
        lambda: stripe_org.api.get("/customers/two/payment_methods")[1]["payment_methods"] == []
    )


def test_validation_errors_are_lago_shaped_and_change_nothing(org: Any) -> None:
    status, body = org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "bad",
                "email": "not-an-email",
                "country": "usa",
                "net_payment_term": "thirty",
                "timezone": "Mars/Olympus",
                "name": "x" * 300,
                "billing_configuration": {"payment_provider": "paypal"},
            }
        },
    )
    assert status == 422
    assert body["status"] == 422 and body["error"] == "Unprocessable Entity"
    assert body["code"] == "validation_errors"
    details = body["error_details"]
    assert details["email"] == ["invalid_format"]
    assert details["country"] == ["not_a_valid_country_code"]
    assert details["net_payment_term"] == ["invalid_type"]
    assert details["timezone"] == ["invalid_timezone"]
    assert details["name"] == ["value_is_too_long"]
    assert "billing_configuration.payment_provider" in details
    assert org.api.get("/customers/bad")[0] == 404

    status, body = org.api.post("/customers", json={"customer": {"name": "no id"}})
    assert status == 422 and body["error_details"] == {"external_id": ["value_is_mandatory"]}
    status, body = org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "x",
                "billing_configuration": {"payment_provider": "stripe"},
            }
        },
    )
    assert status == 422 and body["error_details"] == {
        "payment_provider_code": ["payment_provider_not_found"]
    }
    status, body = org.api.post(
        "/customers",
        json={
            "customer": {"external_id": "x", "billing_configuration": {"payment_provider": "adyen"}}
        },
    )
    assert status == 422 and body["error_details"] == {
        "payment_provider": ["unsupported_payment_provider"]
    }
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "x", "billing_entity_code": "other"}}
    )
    assert status == 404 and body["code"] == "billing_entity_not_found"
    # ISO codes only, as in Lago's contract: shaped right is not enough.
    status, body = org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "x",
                "country": "ZZ",
                "currency": "XYZ",
                "shipping_address": {"country": "QQ"},
            }
        },
    )
    assert status == 422 and body["error_details"] == {
        "country": ["not_a_valid_country_code"],
        "currency": ["value_is_invalid"],
        "shipping_address.country": ["not_a_valid_country_code"],
    }
    assert org.api.get("/customers")[1]["meta"]["total_count"] == 0
    # Lago upper-cases a country before checking it.
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "fr", "country": "fr"}}
    )
    assert status == 200 and body["customer"]["country"] == "FR"


def test_revoked_stripe_key_keeps_customer_and_reports_both_errors(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    revoke_stripe_key(local_billow, stripe_org.secret_key)
    billing = {"payment_provider": "stripe", "sync": True, "sync_with_provider": True}
    status, body = stripe_org.api.post(
        "/customers",
        json={"customer": {"external_id": "revoked", "billing_configuration": billing}},
    )
    assert status == 200
    assert body["customer"]["billing_configuration"]["provider_customer_id"] is None
    assert body["customer"]["error_details"][0]["details"]["error_code"] == "api_key_expired"
    sync = body["customer"]["stripe_sync"]
    assert (sync["status"], sync["error"]["code"]) == ("failed", "api_key_expired")
    assert sync["error"]["message"]

    wait_for(lambda: webhooks(subscribed, "payment_provider.error"))
    [provider_error] = webhooks(subscribed, "payment_provider.error")
    assert provider_error["object_type"] == "payment_provider_error"
    details = provider_error["payment_provider_error"]
    assert details["payment_provider_code"] == "stripe" and details["source"] == "stripe"
    assert details["provider_error"]["error_code"] == "api_key_expired"
    [customer_error] = webhooks(subscribed, "customer.payment_provider_error")
    assert customer_error["payment_provider_customer_error"]["external_customer_id"] == "revoked"


def test_a_crash_after_stripe_created_the_customer_never_creates_a_second_one(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """The first attempt creates the Stripe customer, then fails before Billow records it
    (Stripe is down for the Checkout call). The queue retries; the same idempotency key
    makes Stripe answer with the customer it already created."""
    fault = urllib.parse.urlencode(
        {
            "api_key": stripe_org.secret_key,
            "path_prefix": "/v1/checkout/sessions",
            "status": "500",
            "count": "4",
        }
    ).encode()
    urllib.request.urlopen(f"{local_billow.stripe_url}/_config/faults", data=fault)
    billing = {"payment_provider": "stripe", "sync_with_provider": True}
    status, body = stripe_org.api.post(
        "/customers", json={"customer": {"external_id": "crash", "billing_configuration": billing}}
    )
    assert status == 200
    lago_id = body["customer"]["lago_id"]

    def linked() -> str | None:
        customer = stripe_org.api.get("/customers/crash")[1]["customer"]
        return customer["billing_configuration"]["provider_customer_id"]  # type: ignore[no-any-return]

    stripe_id = wait_for(linked, timeout=30)
    in_stripe = [
        customer
        for customer in stripe_org.stripe.v1.customers.list(params={"limit": 100}).data
        if customer.metadata.to_dict().get("lago_customer_id") == lago_id
    ]
    assert [customer.id for customer in in_stripe] == [stripe_id]
    wait_for(lambda: webhooks(subscribed, "customer.checkout_url_generated"))
    local_billow.wait_idle()
    assert len(webhooks(subscribed, "customer.payment_provider_created")) == 1


def test_repeated_creation_requests_make_one_stripe_customer_and_one_announcement(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    billing = {"payment_provider": "stripe", "sync_with_provider": True}
    for name in ("First", "Second", "Third"):
        status, _ = stripe_org.api.post(
            "/customers",
            json={
                "customer": {"external_id": "again", "name": name, "billing_configuration": billing}
            },
        )
        assert status == 200
    wait_for(lambda: webhooks(subscribed, "customer.checkout_url_generated"))
    local_billow.wait_idle()
    customer = stripe_org.api.get("/customers/again")[1]["customer"]
    in_stripe = [
        found.id
        for found in stripe_org.stripe.v1.customers.list(params={"limit": 100}).data
        if found.metadata.to_dict().get("lago_customer_id") == customer["lago_id"]
    ]
    assert in_stripe == [customer["billing_configuration"]["provider_customer_id"]]
    assert len(webhooks(subscribed, "customer.payment_provider_created")) == 1
    assert len(webhooks(subscribed, "customer.checkout_url_generated")) == 1
    wait_for(lambda: stripe_org.stripe.v1.customers.retrieve(in_stripe[0]).name == "Third")


def test_a_currency_that_is_not_iso_4217_is_refused(org: Any) -> None:
    """The currency plans already insist on: one ISO 4217 list for every input."""
    for currency in ("ZZZ", "XXX", "eur", "EURO", 978):
        status, body = org.api.post(
            "/customers", json={"customer": {"external_id": "acme", "currency": currency}}
        )
        assert status == 422, (currency, body)
        assert set(body["error_details"]) == {"currency"}, body
    assert org.api.get("/customers/acme")[0] == 404
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "acme", "currency": "JPY"}}
    )
    assert status == 200 and body["customer"]["currency"] == "JPY"
