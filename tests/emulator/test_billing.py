"""The emulator's Stripe Billing cycle: a subscription's invoices, charged through
PaymentIntents, and test clocks that renew it after Stripe's grace period."""

from __future__ import annotations

import time

import stripe


def subscribed(client: stripe.StripeClient, clock: str, card: str) -> tuple[str, str]:
    """A monthly 4,900 subscription for a customer on ``clock`` paying with ``card``."""
    product = client.v1.products.create({"name": "Pro Plan"})
    price = client.v1.prices.create(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
        }
    )
    customer = client.v1.customers.create({"name": "acme", "test_clock": clock})
    method = client.v1.payment_methods.create(
        {"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2035, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, {"customer": customer.id})
    client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    return customer.id, sub.id


def test_renewals_wait_for_the_grace_period_and_are_charged_by_payment_intent(
    client: stripe.StripeClient,
) -> None:
    start = int(time.time())
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start})
    customer, sub_id = subscribed(client, clock.id, "4242424242424242")
    first = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    assert (first.status, first.amount_paid, first.billing_reason) == (
        "paid",
        4900,
        "subscription_create",
    )
    [payment] = first["payments"]["data"]
    intent = client.v1.payment_intents.retrieve(payment["payment"]["payment_intent"])
    assert (intent.status, intent.amount, intent.customer) == ("succeeded", 4900, customer)

    period_end = client.v1.subscriptions.retrieve(sub_id)["items"]["data"][0]["current_period_end"]
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 60})
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    assert (renewal.status, renewal.billing_reason) == ("draft", "subscription_cycle")

    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 3601})
    renewal = client.v1.invoices.retrieve(renewal.id)
    assert (renewal.status, renewal.amount_paid) == ("paid", 4900)
    assert renewal.status_transitions.finalized_at == period_end + 3600


def test_a_declined_renewal_leaves_the_subscription_past_due(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    _, sub_id = subscribed(client, clock.id, "4000000000000341")  # declines once saved
    invoice = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    assert (invoice.status, invoice.attempt_count, invoice.amount_paid) == ("open", 1, 0)
    assert client.v1.subscriptions.retrieve(sub_id).status == "past_due"


def test_a_price_change_is_prorated_on_the_next_invoice(client: stripe.StripeClient) -> None:
    start = int(time.time())
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start})
    _, sub_id = subscribed(client, clock.id, "4242424242424242")
    sub = client.v1.subscriptions.retrieve(sub_id)
    item = sub["items"]["data"][0]
    period_start, period_end = item["current_period_start"], item["current_period_end"]
    dearer = client.v1.prices.create(
        {
            "product": item["price"]["product"],
            "currency": "usd",
            "unit_amount": 9900,
            "recurring": {"interval": "month"},
        }
    )
    halfway = period_start + (period_end - period_start) // 2
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": halfway})
    client.v1.subscriptions.update(
        sub_id,
        {
            "items": [{"id": item["id"], "price": dearer.id}],
            "proration_behavior": "create_prorations",
        },
    )
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 3601})
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    amounts = sorted(line["amount"] for line in renewal["lines"]["data"])
    share = (period_end - halfway) / (period_end - period_start)
    assert amounts == sorted([9900, -round(4900 * share), round(9900 * share)])
    assert renewal.amount_paid == sum(amounts)
