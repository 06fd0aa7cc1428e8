"""The emulator's invoice items: added to a renewal while it is a draft, charged with it
at finalization, refused on a finalized invoice, and the account's grace period."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import stripe

from tests.emulator.test_billing import subscribed
from tests.support import http


def renewal_draft(client: stripe.StripeClient) -> tuple[Any, str, int, str]:
    """A subscription's renewal, still a draft: (invoice, clock, period end, customer)."""
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer, sub_id = subscribed(client, clock.id, "4242424242424242")
    period_end = client.v1.subscriptions.retrieve(sub_id)["items"]["data"][0]["current_period_end"]
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 60})
    draft = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id).latest_invoice)
    assert (draft.status, draft.billing_reason) == ("draft", "subscription_cycle")
    return draft, clock.id, period_end, customer


def test_an_item_on_a_renewal_draft_is_charged_with_it(client: stripe.StripeClient) -> None:
    draft, clock, period_end, customer = renewal_draft(client)
    assert draft.automatically_finalizes_at == period_end + 3600
    product = client.v1.products.create({"name": "Pro Plan API calls"})
    usage: Any = {
        "customer": customer,
        "invoice": draft.id,
        "price_data": {"currency": "usd", "product": product.id, "unit_amount": 1250},
        "description": "1,250 API calls",
        "metadata": {"billow_charge_id": "ch-1"},
    }
    item = client.v1.invoice_items.create(usage, {"idempotency_key": "usage-1"})
    again = client.v1.invoice_items.create(usage, {"idempotency_key": "usage-1"})
    assert again.id == item.id  # a retried request adds nothing
    assert (item.amount, item.invoice, item.pricing.price_details.product) == (
        1250,
        draft.id,
        product.id,
    )
    refund = client.v1.invoice_items.create(
        {"customer": customer, "invoice": draft.id, "amount": -250, "currency": "usd"}
    )
    updated = client.v1.invoices.retrieve(draft.id)
    assert [line.amount for line in updated.lines.data] == [4900, 1250, -250]
    assert updated.lines.data[1].parent.invoice_item_details.invoice_item == item.id
    assert (updated.subtotal, updated.total, updated.amount_due) == (5900, 5900, 5900)
    listed = client.v1.invoice_items.list({"invoice": draft.id})
    assert {i.id for i in listed.data} == {item.id, refund.id}
    assert client.v1.invoice_items.delete(refund.id).deleted is True
    assert client.v1.invoices.retrieve(draft.id).total == 6150

    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": period_end + 3601})
    paid = client.v1.invoices.retrieve(draft.id)
    assert (paid.status, paid.amount_paid, paid.automatically_finalizes_at) == ("paid", 6150, None)
    [payment] = paid["payments"]["data"]
    intent = client.v1.payment_intents.retrieve(payment["payment"]["payment_intent"])
    assert intent.amount == 6150

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoice_items.create(
            {"customer": customer, "invoice": draft.id, "amount": 100, "currency": "usd"}
        )
    assert refused.value.param == "invoice"


def test_items_are_refused_as_stripe_refuses_them(client: stripe.StripeClient) -> None:
    draft, _, _, customer = renewal_draft(client)
    other = client.v1.customers.create({"name": "someone else"})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"customer": other.id, "invoice": draft.id, "amount": 100}, "invoice"),
        ({"customer": customer, "invoice": draft.id, "amount": 100, "currency": "eur"}, "currency"),
        ({"customer": customer, "invoice": "in_missing", "amount": 100}, "invoice"),
        ({"customer": customer, "invoice": draft.id}, "amount"),
    ]
    for params, param in cases:
        with pytest.raises(stripe.StripeError) as refused:
            client.v1.invoice_items.create(params)
        assert getattr(refused.value, "param", None) == param, params
    assert client.v1.invoices.retrieve(draft.id).total == 4900


def test_the_accounts_grace_period_sets_when_drafts_are_finalized(emulator_url: str) -> None:
    key = "sk_test_" + uuid.uuid4().hex
    client = stripe.StripeClient(key, base_addresses={"api": emulator_url}, max_network_retries=0)
    url = f"{emulator_url}/_config/invoice_finalization_grace"
    assert http("POST", url, {"api_key": key, "hours": "73"})[0] == 400
    assert http("POST", url, {"api_key": key, "hours": "3"})[0] == 200
    draft, clock, period_end, _ = renewal_draft(client)
    assert draft.automatically_finalizes_at == period_end + 3 * 3600
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": period_end + 3601})
    assert client.v1.invoices.retrieve(draft.id).status == "draft"
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": period_end + 3 * 3600 + 1})
    assert client.v1.invoices.retrieve(draft.id).status == "paid"
