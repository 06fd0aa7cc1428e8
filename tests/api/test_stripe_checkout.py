"""Subscribing through Stripe's hosted checkout (seed 004): a subscription asked for with
``checkout`` waits for the customer to complete Stripe's page, which Stripe bills from
then on; an expired or abandoned page cancels it, and late, repeated or reordered events
never activate it twice or bring it back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billow.domain.clock import utcnow
from tests.api.billing_helpers import create_plan, next_month_start, webhooks
from tests.api.conftest import StripeOrg
from tests.api.test_one_charge_per_invoice import drop_deliveries
from tests.api.test_stripe_catalog_sync import create_coupon, synced
from tests.api.test_stripe_subscription_sync import billow_and_stripe_invoices, billow_charges
from tests.api.test_stripe_webhooks import deliver, signed, webhook_secret
from tests.support import http

SUCCESS_URL = "https://shop.example/welcome?session={CHECKOUT_SESSION_ID}"
CHECKOUT = {"success_url": SUCCESS_URL, "cancel_url": "https://shop.example/plans"}


def new_customer(org: Any, external_id: str = "acme") -> None:
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": external_id, "name": "Acme"}}
    )
    assert status == 200, body


def checkout(
    org: Any, plan: str = "pro", external_id: str = "sub-1", **fields: Any
) -> tuple[int, dict[str, Any]]:
    options = fields.pop("checkout", CHECKOUT)
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "acme",
                "plan_code": plan,
                "external_id": external_id,
                "checkout": options,
                **fields,
            }
        },
    )
    return status, body


def subscription(org: Any, external_id: str = "sub-1") -> dict[str, Any]:
    status, body = org.api.get(f"/subscriptions/{external_id}?status[]=pending&status[]=canceled")
    if status == 404:
        status, body = org.api.get(f"/subscriptions/{external_id}")
    assert status == 200, body
    found: dict[str, Any] = body["subscription"]
    return found


def opened_page(org: Any) -> str:
    """A 49.00 EUR plan, a customer not in Stripe yet, and the checkout page opened for
    subscription ``sub-1``."""
    create_plan(org, "pro", amount_cents=4900)
    new_customer(org)
    status, body = checkout(org)
    assert status == 200, body
    url: str = body["subscription"]["checkout_url"]
    return url


def session_of(billing: StripeOrg, url: str) -> Any:
    return billing.stripe.v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])


def pay(url: str, card: str = "4242424242424242", **form: str) -> None:
    status, _, page = http("POST", url, {"card": card, **form})
    assert status == 303, page


def test_a_checkout_subscribes_the_customer_and_stripe_bills_it(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900, pay_in_advance=True)
    new_customer(billing)  # not in Stripe yet: the checkout makes it there first
    status, body = checkout(billing)
    assert status == 200, body
    created = body["subscription"]
    assert created["status"] == "pending" and created["started_at"] is None
    url = created["checkout_url"]
    assert url.startswith(local_billow.stripe_url + "/checkout/cs_test_")
    [announced] = wait_for(lambda: webhooks(subscribed, "subscription.checkout_url_generated"))
    assert announced["subscription"]["checkout_url"] == url

    customer = billing.api.get("/customers/acme")[1]["customer"]
    stripe_customer = customer["billing_configuration"]["provider_customer_id"]
    assert stripe_customer and customer["billing_configuration"]["payment_provider"] == "stripe"
    session = session_of(billing, url)
    assert (session.mode, session.customer, session.amount_total) == (
        "subscription",
        stripe_customer,
        4900,
    )
    assert session.metadata["billow_id"] == created["lago_id"]

    # Nothing happens until the customer completes the page: the run leaves it pending.
    local_billow.fire_schedule("billing-run", utcnow() + timedelta(hours=2))
    local_billow.wait_idle()
    assert subscription(billing)["status"] == "pending"

    page = http("GET", url)[2]
    assert "Pro Plan: 49.00 EUR per month" in page
    assert f'href="{CHECKOUT["cancel_url"]}"' in page  # the customer's way back, unpaid
    status, headers, _ = http("POST", url, {"card": "4242424242424242"})
    assert status == 303
    assert headers["Location"] == SUCCESS_URL.replace("{CHECKOUT_SESSION_ID}", session.id)

    def active() -> dict[str, Any] | None:
        sub = subscription(billing)
        return sub if sub["stripe_sync"]["status"] == "succeeded" else None

    sub = wait_for(active)
    done = session_of(billing, url)
    assert (sub["status"], sub["checkout_url"]) == ("active", None)
    assert sub["stripe_sync"]["stripe_id"] == done.subscription
    stripe_sub = billing.stripe.v1.subscriptions.retrieve(done.subscription)
    assert sub["started_at"] is not None and stripe_sub.status == "active"
    assert len(webhooks(subscribed, "subscription.started")) == 1

    # The card entered on the page is the customer's (and their default).
    [method] = wait_for(
        lambda: billing.api.get("/customers/acme/payment_methods")[1]["payment_methods"]
    )
    assert (method["provider_method_id"], method["is_default"]) == (
        stripe_sub.default_payment_method,
        True,
    )
    # Stripe billed the first period; Billow copied its invoice and issued none.
    ours, stripes = wait_for(lambda: billow_and_stripe_invoices(billing, "acme"))
    assert ours == [] and [i["stripe_invoice"]["id"] for i in stripes] == [done.invoice]

    local_billow.fire_schedule("billing-run", next_month_start(utcnow()) + timedelta(hours=1))
    local_billow.wait_idle()
    assert billow_and_stripe_invoices(billing, "acme")[0] == []
    assert billow_charges(billing, stripe_customer) == []


def resend(local_billow: Any, billing: StripeOrg, event_type: str, **changes: Any) -> None:
    """Deliver Stripe's event of ``event_type`` again (optionally as another type), signed,
    as a late or repeated delivery reaches Billow."""
    [sent] = billing.stripe.v1.events.list({"type": event_type}).data
    body = json.dumps({**sent.to_dict(), **changes}).encode()
    secret = webhook_secret(local_billow, billing.id)
    status, answer = deliver(local_billow, billing.id, body, signed(body, secret))
    assert status == 200, answer


def test_repeated_and_reordered_events_activate_once(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    url = opened_page(billing)
    pay(url)
    wait_for(lambda: subscription(billing)["status"] == "active")
    local_billow.wait_idle()
    resend(local_billow, billing, "checkout.session.completed", id="evt_again_completed")
    # An expiry that could only be older than the completion (a forged or reordered one).
    resend(
        local_billow,
        billing,
        "checkout.session.completed",
        id="evt_late_expired",
        type="checkout.session.expired",
    )
    local_billow.wait_idle()
    sub = subscription(billing)
    assert sub["status"] == "active"
    assert len(webhooks(subscribed, "subscription.started")) == 1
    assert webhooks(subscribed, "subscription.canceled") == []
    assert len(billing.api.get("/customers/acme/payment_methods")[1]["payment_methods"]) == 1


def test_an_expired_page_cancels_the_pending_subscription(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    url = opened_page(billing)
    billing.stripe.v1.checkout.sessions.expire(url.rsplit("/", 1)[-1])
    wait_for(lambda: webhooks(subscribed, "subscription.canceled"))
    sub = subscription(billing)
    assert (sub["status"], sub["checkout_url"]) == ("canceled", None)
    assert http("GET", url)[0] == 410
    # The external id is free again: a new checkout starts a new subscription.
    assert checkout(billing)[0] == 200


def test_terminating_while_the_page_is_open_closes_the_page(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    url = opened_page(billing)
    status, body = billing.api.delete("/subscriptions/sub-1?status=pending")
    assert status == 200 and body["subscription"]["status"] == "canceled", body
    wait_for(lambda: session_of(billing, url).status == "expired")
    assert http("POST", url, {"card": "4242424242424242"})[0] == 410
    assert billing.stripe.v1.subscriptions.list({"status": "all"}).data == []


def test_a_page_completed_after_billow_canceled_is_not_billed_by_stripe(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    url = opened_page(billing)
    # Stripe's events are held back while the customer pays and Billow cancels: the
    # page is complete before Billow's sync could close it.
    [endpoint] = billing.stripe.v1.webhook_endpoints.list().data
    billing.stripe.v1.webhook_endpoints.update(endpoint.id, {"disabled": True})
    pay(url)
    assert billing.api.delete("/subscriptions/sub-1?status=pending")[0] == 200
    local_billow.wait_idle()
    billing.stripe.v1.webhook_endpoints.update(endpoint.id, {"disabled": False})
    resend(local_billow, billing, "checkout.session.completed")
    local_billow.wait_idle()
    [made] = billing.stripe.v1.subscriptions.list({"status": "all"}).data
    assert made.status == "canceled"
    assert subscription(billing)["status"] == "canceled"
    assert webhooks(subscribed, "subscription.started") == []


@pytest.mark.parametrize(
    ("plan_fields", "request_fields", "details"),
    [
        ({"amount_cents": 0}, {}, {"checkout": ["free_plan"]}),
        ({"trial_period": 14}, {}, {"checkout": ["trial"]}),
        ({}, {"payment_method": {"payment_method_type": "manual"}}, None),
        ({}, {"subscription_at": "2099-01-01T00:00:00Z"}, None),
        ({}, {"checkout": {"success_url": "not a url", "cancel_url": "https://x.test"}}, None),
        ({}, {"checkout": {"success_url": "https://x.test"}}, None),
        ({}, {"checkout": {**CHECKOUT, "collect_everything": True}}, None),
    ],
)
def test_checkouts_billow_cannot_open_are_refused_and_change_nothing(
    billing: StripeOrg,
    plan_fields: dict[str, Any],
    request_fields: dict[str, Any],
    details: dict[str, Any] | None,
) -> None:
    create_plan(billing, "pro", **{"amount_cents": 4900, **plan_fields})
    new_customer(billing)
    status, body = checkout(billing, **request_fields)
    assert status == 422, body
    if details is not None:
        assert body["error_details"] == details
    assert billing.api.get("/subscriptions/sub-1?status[]=pending")[0] == 404
    assert billing.stripe.v1.checkout.sessions.list().data == []


def test_a_checkout_needs_subscriptions_synced_to_stripe(stripe_org: StripeOrg) -> None:
    create_plan(stripe_org, "pro", amount_cents=4900)
    new_customer(stripe_org)
    status, body = checkout(stripe_org)
    assert status == 422 and body["error_details"] == {"checkout": ["subscription_sync_disabled"]}


def test_a_repeated_request_answers_with_the_same_page(billing: StripeOrg) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    new_customer(billing)
    first = checkout(billing)[1]["subscription"]
    status, again = checkout(billing)
    assert status == 200 and again["subscription"]["checkout_url"] == first["checkout_url"]
    assert len(billing.stripe.v1.checkout.sessions.list().data) == 1
    create_plan(billing, "max", amount_cents=9900)
    status, body = checkout(billing, plan="max")
    assert status == 422 and body["error_details"] == {
        "external_id": ["subscription_already_exists"]
    }


def test_a_promotion_code_of_a_synced_coupon_discounts_the_checkout(
    local_billow: Any, billing: StripeOrg, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    create_coupon(
        billing,
        "launch",
        coupon_type="percentage",
        percentage_rate="20",
        frequency="once",
        expiration="no_expiration",
    )
    coupon_id = synced(billing, "coupons/launch", wait_for)["stripe_sync"]["stripe_id"]
    # The merchant gives the synced coupon a code customers can type (Stripe's dashboard).
    billing.stripe.v1.promotion_codes.create(
        {"promotion": {"type": "coupon", "coupon": coupon_id}, "code": "LAUNCH"}
    )
    new_customer(billing)
    status, body = checkout(
        billing,
        checkout={**CHECKOUT, "allow_promotion_codes": True},
        billing_time="anniversary",
    )
    assert status == 200, body
    url = body["subscription"]["checkout_url"]
    assert 'name="promotion_code"' in http("GET", url)[2]
    pay(url, promotion_code="LAUNCH")
    wait_for(lambda: subscription(billing)["status"] == "active")
    [copied] = wait_for(lambda: billow_and_stripe_invoices(billing, "acme")[1])
    assert (copied["fees_amount_cents"], copied["coupons_amount_cents"]) == (4900, 980)
    assert copied["total_amount_cents"] == 3920


def test_events_stripe_never_delivered_are_recovered_by_the_hourly_sweep(
    local_billow: Any, billing: StripeOrg, wait_for: Any
) -> None:
    """The completion and the invoice's payment are lost on the way (Stripe gave up
    delivering them): the sweep reads them from Stripe's event list, prices and all, and
    the subscription starts and the invoice is paid in Billow."""
    url = opened_page(billing)
    drop_deliveries(local_billow, billing, 1, "checkout.session.completed")
    drop_deliveries(local_billow, billing, 1, "invoice.paid")
    pay(url)
    local_billow.wait_idle()
    assert subscription(billing)["status"] == "pending"

    local_billow.fire_schedule("stripe-events-sweep", datetime.now(UTC))
    local_billow.wait_idle()
    assert subscription(billing)["status"] == "active"
    [copied] = billow_and_stripe_invoices(billing, "acme")[1]
    assert copied["payment_status"] == "succeeded"
