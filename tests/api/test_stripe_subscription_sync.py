"""Subscriptions invoiced by Stripe Billing (seed 004): made in Stripe on the plan's
Price, never invoiced by Billow as well, moved to another Price on an upgrade, canceled
when terminated in Billow, and terminated in Billow when canceled in Stripe. The rules
for what Billow keeps billing itself are shown with their reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billow.domain.clock import utcnow
from tests.api.billing_helpers import (
    create_plan,
    invoices_of,
    next_month_start,
    payment_intents,
    stripe_customer,
    webhooks,
)
from tests.api.conftest import StripeOrg, new_stripe_key, stripe_client


@pytest.fixture
def billing(local_billow: Any, org: Any) -> StripeOrg:
    """An organization whose subscriptions Stripe Billing invoices."""
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": key, "sync_catalog": True, "sync_subscriptions": True}},
    )
    assert status == 200, body
    return StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


def subscribe(org: Any, customer: str, plan: str, external_id: str = "sub-1") -> dict[str, Any]:
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": customer,
                "plan_code": plan,
                "external_id": external_id,
                "billing_time": "anniversary",
            }
        },
    )
    assert status == 200, body
    created: dict[str, Any] = body["subscription"]
    return created


def mirrored(org: Any, external_id: str, wait_for: Any, status: str = "succeeded") -> Any:
    def reached() -> dict[str, Any] | None:
        code, body = org.api.get(f"/subscriptions/{external_id}")
        assert code == 200, body
        sync = body["subscription"]["stripe_sync"]
        assert sync["status"] != "failed" or status == "failed", sync
        return body["subscription"] if sync["status"] == status else None

    return wait_for(reached)


def test_stripe_bills_a_synced_subscription_and_billow_never_does(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900, pay_in_advance=True)
    stripe_id = stripe_customer(billing, "acme", wait_for=wait_for)
    created = subscribe(billing, "acme", "pro")
    assert created["stripe_sync"]["status"] == "pending"

    sub = mirrored(billing, "sub-1", wait_for)
    stripe_sub = billing.stripe.v1.subscriptions.retrieve(sub["stripe_sync"]["stripe_id"])
    assert stripe_sub.customer == stripe_id and stripe_sub.status == "active"
    assert stripe_sub.metadata["billow_external_id"] == "sub-1"
    assert sub["stripe_sync"]["stripe_url"].endswith(f"/test/subscriptions/{stripe_sub.id}")
    [item] = stripe_sub["items"]["data"]
    _, plan = billing.api.get("/plans/pro")
    plan_price = plan["plan"]["stripe_sync"]
    assert item["price"]["product"] == plan_price["stripe_id"]
    assert item["price"]["unit_amount"] == 4900

    # A whole period goes by: Billow's run reaches the subscription and bills nothing.
    local_billow.fire_schedule("billing-run", next_month_start(utcnow()) + timedelta(days=40))
    local_billow.wait_idle()
    assert invoices_of(billing, "acme") == []
    assert payment_intents(billing, stripe_id) == []
    assert webhooks(subscribed, "invoice.created") == []


@pytest.mark.parametrize(
    ("plan_fields", "card", "reason"),
    [
        ({"amount_cents": 0}, True, "free_plan"),
        ({"trial_period": 14}, True, "trial"),
    ],
)
def test_what_billow_keeps_billing_itself_says_why(
    billing: StripeOrg, wait_for: Any, plan_fields: dict[str, Any], card: bool, reason: str
) -> None:
    create_plan(billing, "basic", **{"amount_cents": 1000, **plan_fields})
    stripe_customer(billing, "acme", wait_for=wait_for)
    created = subscribe(billing, "acme", "basic")
    assert created["stripe_sync"]["status"] == "not_required"
    assert created["stripe_sync"]["reason"] == reason
    assert list(billing.stripe.v1.subscriptions.list().data) == []


def test_without_subscription_sync_billow_bills_as_before(
    stripe_org: StripeOrg, wait_for: Any
) -> None:
    create_plan(stripe_org, "pro", amount_cents=1000, pay_in_advance=True)
    stripe_customer(stripe_org, "acme", wait_for=wait_for)
    created = subscribe(stripe_org, "acme", "pro")
    assert created["stripe_sync"]["reason"] == "subscription_sync_disabled"
    wait_for(lambda: invoices_of(stripe_org, "acme"))


def test_a_customer_stripe_cannot_charge_goes_back_to_billow(
    billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Stripe refuses a subscription with no card to charge: the sync fails, visibly,
    and Billow bills the subscription itself from its start, so it is never unbilled."""
    create_plan(billing, "pro", amount_cents=2500, pay_in_advance=True)
    stripe_customer(billing, "nocard", card=None)
    subscribe(billing, "nocard", "pro")
    sub = mirrored(billing, "sub-1", wait_for, status="failed")
    assert sub["stripe_sync"]["error"]["code"] == "resource_missing"
    [invoice] = wait_for(lambda: invoices_of(billing, "nocard"))
    assert invoice["fees_amount_cents"] == 2500
    [failed] = wait_for(lambda: webhooks(subscribed, "stripe_sync.failed"))
    assert failed["stripe_sync_error"]["object_type"] == "subscription"
    _, body = billing.api.get("/subscriptions/sub-1")
    assert body["subscription"]["stripe_sync"]["status"] == "failed"
    assert list(billing.stripe.v1.subscriptions.list().data) == []


def test_an_upgrade_moves_the_stripe_subscription_to_the_new_price(
    billing: StripeOrg, wait_for: Any
) -> None:
    create_plan(billing, "basic", amount_cents=1000)
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "basic")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]

    upgraded = subscribe(billing, "acme", "pro")
    assert upgraded["plan_code"] == "pro"

    def on_pro() -> bool:
        items = billing.stripe.v1.subscriptions.retrieve(stripe_id)["items"]["data"]
        return bool(items[0]["price"]["unit_amount"] == 4900)

    wait_for(on_pro)
    sub = mirrored(billing, "sub-1", wait_for)
    assert sub["stripe_sync"]["stripe_id"] == stripe_id
    assert billing.stripe.v1.subscriptions.retrieve(stripe_id).status == "active"
    assert len(list(billing.stripe.v1.subscriptions.list().data)) == 1
    assert invoices_of(billing, "acme") == []


def test_terminating_in_billow_cancels_in_stripe(billing: StripeOrg, wait_for: Any) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]
    status, body = billing.api.delete("/subscriptions/sub-1")
    assert status == 200, body
    assert body["subscription"]["status"] == "terminated"
    wait_for(lambda: billing.stripe.v1.subscriptions.retrieve(stripe_id).status == "canceled")
    assert invoices_of(billing, "acme") == []  # Stripe invoiced it, not Billow


def test_canceling_in_stripe_terminates_in_billow_without_an_invoice(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]

    billing.stripe.v1.subscriptions.cancel(stripe_id)  # in Stripe's dashboard, say

    def terminated() -> bool:
        _, body = billing.api.get("/subscriptions/sub-1?status[]=terminated")
        return bool(body["subscription"]["status"] == "terminated")

    wait_for(terminated)
    local_billow.wait_idle()
    [ended] = webhooks(subscribed, "subscription.terminated")
    assert ended["subscription"]["external_id"] == "sub-1"
    assert invoices_of(billing, "acme") == []
