"""The emulator's Checkout in ``subscription`` mode: the hosted page subscribes the
customer to a recurring Price and pays the first invoice, as Stripe Checkout does."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from tests.emulator.test_stripe_emulator import (
    DECLINED_LATER,
    NEEDS_3DS,
    SUCCEEDS,
    Account,
    wait_for,
)
from tests.support import http

ADDRESS = {
    "address_line1": "1 Rue de Rivoli",
    "address_city": "Paris",
    "address_postal_code": "75001",
    "address_country": "fr",
}


def monthly_price(account: Account, amount: int = 4900) -> Any:
    product = account.client.v1.products.create({"name": "Pro Plan"})
    return account.client.v1.prices.create(
        {
            "product": product.id,
            "currency": "eur",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
        }
    )


def subscription_session(account: Account, customer: str, price: str, **params: Any) -> Any:
    return account.checkout(
        mode="subscription",
        customer=customer,
        line_items=[{"price": price, "quantity": 1}],
        success_url="https://billow.test/done?session={CHECKOUT_SESSION_ID}",
        cancel_url="https://billow.test/cancel",
        subscription_data={"metadata": {"billow_id": "sub_1"}},
        **params,
    )


def test_confirming_subscribes_the_customer_and_pays_the_first_invoice(account: Account) -> None:
    receiver = account.listen()
    price = monthly_price(account)
    customer = account.client.v1.customers.create({"name": "Acme"})
    session = subscription_session(account, customer.id, price.id)
    assert (session.mode, session.status, session.amount_total) == ("subscription", "open", 4900)
    assert session.subscription is None

    status, _, page = http("GET", session.url)
    assert status == 200 and "Pro Plan: 49.00 EUR per month" in page
    # Nothing asked for but the card; the 3-D Secure card is not offered here.
    for field in ("promotion_code", "address_line1", "phone", "tax_id_value"):
        assert f'name="{field}"' not in page
    assert NEEDS_3DS not in page

    status, headers, _ = http("POST", session.url, {"card": SUCCEEDS})
    assert status == 303 and headers["Location"].endswith(session.id)

    done = account.client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    sub = account.client.v1.subscriptions.retrieve(done.subscription)
    assert (sub.status, sub.customer, sub.metadata.to_dict()) == (
        "active",
        customer.id,
        {"billow_id": "sub_1"},
    )
    assert sub["items"]["data"][0]["price"]["id"] == price.id
    card = account.client.v1.payment_methods.retrieve(sub.default_payment_method)
    assert card.customer == customer.id
    invoice = account.client.v1.invoices.retrieve(done.invoice)
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == (
        "paid",
        4900,
        "subscription_create",
    )

    wait_for(lambda: receiver.events("checkout.session.completed"))
    types = [event["type"] for event in receiver.events()]
    assert types.index("customer.subscription.created") < types.index("invoice.paid")
    assert types.index("invoice.paid") < types.index("checkout.session.completed")
    status, _, page = http("POST", session.url, {"card": SUCCEEDS})
    assert status == 409 and "already complete" in page


def test_a_declined_card_subscribes_nobody_and_the_session_stays_open(account: Account) -> None:
    price = monthly_price(account)
    customer = account.client.v1.customers.create()
    session = subscription_session(account, customer.id, price.id)
    status, _, page = http("POST", session.url, {"card": DECLINED_LATER})
    assert status == 402 and "declined" in page
    assert account.client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert account.client.v1.subscriptions.list({"customer": customer.id}).data == []

    assert http("POST", session.url, {"card": SUCCEEDS})[0] == 303


def test_the_page_asks_for_what_the_session_asks_and_keeps_the_address(account: Account) -> None:
    receiver = account.listen(["customer.updated", "checkout.session.completed"])
    price = monthly_price(account)
    customer = account.client.v1.customers.create({"name": "Acme"})
    session = subscription_session(
        account,
        customer.id,
        price.id,
        allow_promotion_codes=True,
        billing_address_collection="required",
        phone_number_collection={"enabled": True},
        tax_id_collection={"enabled": True},
        customer_update={"address": "auto", "name": "auto"},
    )
    _, _, page = http("GET", session.url)
    for field in ("promotion_code", "address_line1", "address_country", "phone", "tax_id_value"):
        assert f'name="{field}"' in page

    status, _, page = http("POST", session.url, {"card": SUCCEEDS})
    assert status == 400 and "billing address" in page

    form = {**ADDRESS, "phone": "+33 1 23 45 67 89", "tax_id_type": "eu_vat"}
    form |= {"tax_id_value": "FR12345678901", "card": SUCCEEDS}
    assert http("POST", session.url, form)[0] == 303
    done = account.client.v1.checkout.sessions.retrieve(session.id)
    details = done.customer_details
    assert details.phone == "+33 1 23 45 67 89"
    assert details.address.country == "FR" and details.address.postal_code == "75001"
    assert [tax_id.to_dict() for tax_id in details.tax_ids] == [
        {"type": "eu_vat", "value": "FR12345678901"}
    ]
    kept = account.client.v1.customers.retrieve(customer.id)
    assert (kept.address.city, kept.address.country) == ("Paris", "FR")
    [updated] = wait_for(lambda: receiver.events("customer.updated"))
    assert updated["data"]["previous_attributes"] == {"address": None}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"payment_intent_data": {"description": "x"}}, "in `subscription` mode"),
        ({"tax_id_collection": {"enabled": True}}, "customer_update[name]"),
        ({"customer_update": {"address": "sometimes"}}, "Invalid customer_update[address]"),
        ({"billing_address_collection": "always"}, "billing_address_collection"),
    ],
)
def test_subscription_sessions_are_checked_as_stripe_checks_them(
    account: Account, params: dict[str, Any], message: str
) -> None:
    price = monthly_price(account)
    customer = account.client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscription_session(account, customer.id, price.id, **params)
    assert message in str(refused.value.user_message)


def test_subscription_mode_takes_recurring_prices_and_payment_mode_one_time(
    account: Account,
) -> None:
    recurring = monthly_price(account)
    customer = account.client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as refused:
        account.checkout(
            mode="payment",
            customer=customer.id,
            line_items=[{"price": recurring.id, "quantity": 1}],
        )
    assert "recurring price" in str(refused.value.user_message)
    one_time = account.client.v1.prices.create(
        {"product": recurring.product, "currency": "eur", "unit_amount": 500}
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        subscription_session(account, customer.id, one_time.id)
    assert refused.value.param == "line_items[0][price]"


def test_a_promotion_code_discounts_the_invoices_its_coupon_covers(account: Account) -> None:
    price = monthly_price(account)
    coupon = account.client.v1.coupons.create({"percent_off": 20, "duration": "once"})
    promotion = account.client.v1.promotion_codes.create(
        {"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "WELCOME20"}
    )
    assert (promotion.code, promotion.active, promotion.promotion.coupon) == (
        "WELCOME20",
        True,
        coupon.id,
    )
    clock = account.client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer = account.client.v1.customers.create({"test_clock": clock.id})
    session = subscription_session(account, customer.id, price.id, allow_promotion_codes=True)

    status, _, page = http("POST", session.url, {"card": SUCCEEDS, "promotion_code": "NOPE"})
    assert status == 400 and "This code is invalid." in page
    assert http("POST", session.url, {"card": SUCCEEDS, "promotion_code": "welcome20"})[0] == 303

    done = account.client.v1.checkout.sessions.retrieve(session.id)
    assert (done.amount_subtotal, done.amount_total, done.total_details.amount_discount) == (
        4900,
        3920,
        980,
    )
    first = account.client.v1.invoices.retrieve(done.invoice)
    assert (first.total, first.amount_paid) == (3920, 3920)
    [discounted] = first.total_discount_amounts
    assert discounted.amount == 980
    assert account.client.v1.promotion_codes.retrieve(promotion.id).times_redeemed == 1

    # A ``once`` coupon is spent: the renewal is billed in full.
    sub = account.client.v1.subscriptions.retrieve(done.subscription)
    end = sub["items"]["data"][0]["current_period_end"]
    account.client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 3601})
    renewal = account.client.v1.invoices.retrieve(
        account.client.v1.subscriptions.retrieve(sub.id).latest_invoice
    )
    assert (renewal.billing_reason, renewal.total, renewal.total_discount_amounts) == (
        "subscription_cycle",
        4900,
        [],
    )
