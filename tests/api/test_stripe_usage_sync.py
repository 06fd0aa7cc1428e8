"""Usage on Stripe's invoices (seed 004): a Stripe-billed subscription's usage is added to
Stripe's renewal while it is a draft, one line per charge of the charge's own Product,
and charged with it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billow.domain.clock import utcnow
from tests.api.billing_helpers import stripe_customer
from tests.api.conftest import StripeOrg
from tests.api.test_stripe_subscription_sync import mirrored, stripe_invoices, subscribe
from tests.api.test_stripe_webhooks import deliver, signed, webhook_secret
from tests.api.test_usage_billing import HOUR, charge, metric, send, usage_plan
from tests.support import http


def metered_customer(billing: StripeOrg, wait_for: Any) -> tuple[str, str, int]:
    """A customer on a test clock subscribed (through Stripe) to a plan with a fee and a
    usage charge: (clock, Stripe subscription, the Stripe period's end)."""
    calls = metric(billing, "calls", "count_agg")
    usage_plan(
        billing,
        "metered",
        [charge(calls, "standard", properties={"amount": "0.5"})],
        amount_cents=4900,
    )
    clock = billing.stripe.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(utcnow().timestamp())}
    )
    stripe_id = stripe_customer(billing, "acme", wait_for=wait_for, test_clock=clock.id)
    subscribe(billing, "acme", "metered")
    synced = mirrored(billing, "sub-1", wait_for)
    (stripe_sub,) = billing.stripe.v1.subscriptions.list(params={"customer": stripe_id}).data
    assert stripe_sub.id == synced["stripe_sync"]["stripe_id"]
    return clock.id, stripe_sub.id, stripe_sub["items"]["data"][0]["current_period_end"]


def test_usage_is_added_to_stripes_renewal_and_charged_with_it(
    local_billow: Any, billing: StripeOrg, wait_for: Any
) -> None:
    clock, stripe_sub, period_end = metered_customer(billing, wait_for)
    started = datetime.fromisoformat(
        billing.api.get("/subscriptions/sub-1")[1]["subscription"]["started_at"]
    )
    for n in range(7):
        send(billing, "sub-1", "calls", started + HOUR, f"call-{n}")
    local_billow.wait_idle()

    billing.stripe.v1.test_helpers.test_clocks.advance(
        clock, params={"frozen_time": period_end + 60}
    )
    local_billow.wait_idle()
    renewal = billing.stripe.v1.invoices.retrieve(
        billing.stripe.v1.subscriptions.retrieve(stripe_sub).latest_invoice
    )
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.status == "draft"
    fee, usage = wait_for(
        lambda: (
            (lines := billing.stripe.v1.invoices.retrieve(renewal.id).lines.data)
            and len(lines) == 2
            and lines
        )
    )
    assert fee.amount == 4900
    assert (usage.amount, usage.description) == (350, "7 Calls")  # 7 × 0.50
    product = billing.stripe.v1.products.retrieve(usage.pricing.price_details.product)
    assert product.name == "Metered Calls"
    assert product.metadata["billow_charge_id"] == usage.metadata["billow_charge_id"]

    # The same invoice.created delivered again adds nothing: items are keyed by invoice
    # and fee.
    created = next(
        e
        for e in billing.stripe.v1.events.list({"type": "invoice.created", "limit": 10}).data
        if e.data.object["id"] == renewal.id
    )
    body = json.dumps({**created.to_dict(), "id": "evt_created_again"}, default=str).encode()
    secret = webhook_secret(local_billow, billing.id)
    assert deliver(local_billow, billing.id, body, signed(body, secret))[0] == 200
    local_billow.wait_idle()
    assert len(billing.stripe.v1.invoices.retrieve(renewal.id).lines.data) == 2

    billing.stripe.v1.test_helpers.test_clocks.advance(
        clock, params={"frozen_time": period_end + 3601}
    )
    local_billow.wait_idle()
    paid = billing.stripe.v1.invoices.retrieve(renewal.id)
    assert (paid.status, paid.amount_paid) == ("paid", 5250)
    mirrored_renewal = wait_for(
        lambda: next(
            (
                i
                for i in stripe_invoices(billing, "acme")
                if i["stripe_invoice"]["id"] == renewal.id and i["payment_status"] == "succeeded"
            ),
            None,
        )
    )
    assert mirrored_renewal["total_amount_cents"] == 5250


def test_an_account_that_finalizes_too_soon_refuses_usage_sync(
    local_billow: Any, billing: StripeOrg, wait_for: Any
) -> None:
    status, _, _ = http(
        "POST",
        f"{local_billow.stripe_url}/_config/invoice_finalization_grace",
        {"api_key": billing.secret_key, "hours": "0"},
    )
    assert status == 200
    clock, _, period_end = metered_customer(billing, wait_for)
    billing.stripe.v1.test_helpers.test_clocks.advance(
        clock, params={"frozen_time": period_end + 60}
    )
    local_billow.wait_idle()

    (connection,) = billing.api.get("/integrations/stripe")[1]["integrations"]
    assert connection["usage_sync_refused"] == "finalization_grace_period_too_short"
    billing.api.post("/customers", json={"customer": {"external_id": "later"}})
    status, body = billing.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "later",
                "plan_code": "metered",
                "external_id": "later-1",
            }
        },
    )
    assert status == 200, body
    sync = body["subscription"]["stripe_sync"]
    assert (sync["status"], sync["reason"]) == ("not_required", "usage_sync_refused")
