"""The emulator's Stripe Tax: calculations and transactions on its fixed rate table, the
customer's tax location, and automatic tax on subscriptions' invoices."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from local.stripe_emulator import tax

PARIS = {"line1": "1 rue de Rivoli", "city": "Paris", "postal_code": "75001", "country": "FR"}
BERLIN = {"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"}
SOUTH_SF = {"line1": "354 Oyster Point Blvd", "postal_code": "94080", "country": "US"}


def calculate(
    client: stripe.StripeClient,
    address: dict[str, str],
    *line_items: dict[str, Any],
    **extra: Any,
) -> Any:
    return client.v1.tax.calculations.create(
        {
            "currency": "eur",
            "customer_details": {"address": address, "address_source": "billing"},
            "line_items": list(line_items),
            **extra,
        }
    )


def test_a_french_calculation_adds_twenty_percent_vat(client: stripe.StripeClient) -> None:
    calc = calculate(
        client,
        PARIS,
        {"amount": 10000, "reference": "seat"},
        {"amount": 2550, "reference": "support", "quantity": 3},
        expand=["line_items"],
    )
    assert calc.object == "tax.calculation"
    assert calc.id.startswith("taxcalc_")
    assert (calc.amount_total, calc.tax_amount_exclusive, calc.tax_amount_inclusive) == (
        15060,
        2510,
        0,
    )
    [breakdown] = calc.tax_breakdown
    assert breakdown.to_dict() == {
        "amount": 2510,
        "inclusive": False,
        "tax_rate_details": {
            "country": "FR",
            "flat_amount": None,
            "percentage_decimal": "20.0",
            "rate_type": "percentage",
            "state": None,
            "tax_type": "vat",
        },
        "taxability_reason": "standard_rated",
        "taxable_amount": 12550,
    }
    assert calc.customer_details.address.postal_code == "75001"
    assert calc.customer_details.address.state is None
    assert (calc.customer_details.address_source, calc.shipping_cost) == ("billing", None)
    assert calc.expires_at - calc.tax_date == 90 * 24 * 3600
    lines = calc.line_items.data
    assert [(li.reference, li.amount, li.amount_tax, li.quantity) for li in lines] == [
        ("seat", 10000, 2000, 1),
        ("support", 2550, 510, 3),
    ]
    assert {(li.object, li.tax_behavior, li.tax_code) for li in lines} == {
        ("tax.calculation_line_item", "exclusive", "txcd_10000000")
    }
    again = client.v1.tax.calculations.retrieve(calc.id)
    assert (again.amount_total, again.line_items) == (15060, None)
    listed = client.v1.tax.calculations.line_items.list(calc.id, {"limit": 1})
    assert ([li.reference for li in listed.data], listed.has_more) == (["seat"], True)


def test_german_vat_rounds_half_up_to_the_cent(client: stripe.StripeClient) -> None:
    # 19% of 1,950 is 370.5: Stripe rounds half up, to 371 (not to the even 370).
    calc = calculate(client, BERLIN, {"amount": 1950, "reference": "plan"})
    assert (calc.tax_amount_exclusive, calc.amount_total) == (371, 2321)
    assert calc.tax_breakdown[0].tax_rate_details.percentage_decimal == "19.0"


def test_us_sales_tax_follows_the_state_of_the_zip_code(client: stripe.StripeClient) -> None:
    california = calculate(client, SOUTH_SF, {"amount": 1499, "reference": "pizza"})
    # 7.25% of 1,499 is 108.68.
    assert (california.tax_amount_exclusive, california.amount_total) == (109, 1608)
    details = california.tax_breakdown[0].tax_rate_details
    assert (details.country, details.state, details.tax_type, details.percentage_decimal) == (
        "US",
        "CA",
        "sales_tax",
        "7.25",
    )
    texas = calculate(
        client, {"country": "US", "postal_code": "75001-1234"}, {"amount": 200, "reference": "a"}
    )
    assert texas.tax_amount_exclusive == 13  # 6.25% of 200 is 12.5, rounded half up
    oregon = calculate(
        client, {"country": "US", "postal_code": "97201"}, {"amount": 5000, "reference": "b"}
    )
    [breakdown] = oregon.tax_breakdown
    assert (oregon.amount_total, breakdown.amount, breakdown.taxability_reason) == (
        5000,
        0,
        "not_subject_to_tax",
    )


def test_inclusive_amounts_hold_their_tax_exclusive_ones_add_it(
    client: stripe.StripeClient,
) -> None:
    calc = calculate(
        client,
        PARIS,
        {"amount": 12000, "reference": "inclusive", "tax_behavior": "inclusive"},
        {"amount": 12000, "reference": "exclusive", "tax_behavior": "exclusive"},
    )
    assert (calc.tax_amount_inclusive, calc.tax_amount_exclusive) == (2000, 2400)
    assert calc.amount_total == 12000 + 12000 + 2400
    by_behaviour = {b.inclusive: (b.amount, b.taxable_amount) for b in calc.tax_breakdown}
    assert by_behaviour == {True: (2000, 10000), False: (2400, 12000)}


def test_a_customer_exempt_override_charges_no_tax(client: stripe.StripeClient) -> None:
    calc = client.v1.tax.calculations.create(
        {
            "currency": "eur",
            "customer_details": {
                "address": PARIS,
                "address_source": "shipping",
                "taxability_override": "customer_exempt",
            },
            "line_items": [{"amount": 1000, "reference": "x"}],
        }
    )
    assert (calc.amount_total, calc.tax_breakdown[0].taxability_reason) == (1000, "customer_exempt")


@pytest.mark.parametrize(
    ("address", "param"),
    [
        ({"country": "US", "postal_code": "00000"}, "customer_details[address][postal_code]"),
        ({"country": "US", "state": "CA"}, "customer_details[address][postal_code]"),
        ({"country": "JP", "postal_code": "100-0001"}, "customer_details[address][country]"),
        ({"city": "Paris"}, "customer_details[address][country]"),
    ],
)
def test_an_address_the_table_cannot_place_is_customer_tax_location_invalid(
    client: stripe.StripeClient, address: dict[str, str], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        calculate(client, address, {"amount": 1000, "reference": "x"})
    assert raised.value.http_status == 400
    assert (raised.value.code, raised.value.param) == ("customer_tax_location_invalid", param)


def test_a_calculation_for_a_customer_uses_the_customer_address(
    client: stripe.StripeClient,
) -> None:
    located = client.v1.customers.create({"address": BERLIN})
    calc = client.v1.tax.calculations.create(
        {
            "currency": "eur",
            "customer": located.id,
            "line_items": [{"amount": 100, "reference": "x"}],
        }
    )
    assert (calc.customer, calc.customer_details.address.country) == (located.id, "DE")
    assert calc.tax_amount_exclusive == 19

    nowhere = client.v1.customers.create({"name": "no address"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.tax.calculations.create(
            {
                "currency": "eur",
                "customer": nowhere.id,
                "line_items": [{"amount": 100, "reference": "x"}],
            }
        )
    assert (raised.value.code, raised.value.param) == ("customer_tax_location_invalid", "customer")


def test_line_item_references_are_required_and_unique(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        calculate(client, PARIS, {"amount": 100})
    assert raised.value.param == "line_items[0][reference]"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        calculate(client, PARIS, {"amount": 100, "reference": "a"}, {"amount": 5, "reference": "a"})
    assert raised.value.param == "line_items[1][reference]"


def test_a_transaction_records_a_calculation_once_per_reference(
    client: stripe.StripeClient,
) -> None:
    calc = calculate(
        client, PARIS, {"amount": 10000, "reference": "seat"}, {"amount": 500, "reference": "fee"}
    )
    transaction = client.v1.tax.transactions.create_from_calculation(
        {
            "calculation": calc.id,
            "reference": "invoice-42",
            "metadata": {"invoice": "42"},
            "expand": ["line_items"],
        }
    )
    assert transaction.object == "tax.transaction"
    assert (transaction.reference, transaction.type, transaction.currency) == (
        "invoice-42",
        "transaction",
        "eur",
    )
    assert transaction.metadata.to_dict() == {"invoice": "42"}
    assert (transaction.tax_date, transaction.reversal) == (calc.tax_date, None)
    assert transaction.customer_details.address.country == "FR"
    assert [
        (li.object, li.reference, li.amount, li.amount_tax, li.type)
        for li in transaction.line_items.data
    ] == [
        ("tax.transaction_line_item", "seat", 10000, 2000, "transaction"),
        ("tax.transaction_line_item", "fee", 500, 100, "transaction"),
    ]
    retrieved = client.v1.tax.transactions.retrieve(transaction.id)
    assert (retrieved.id, retrieved.line_items) == (transaction.id, None)
    listed = client.v1.tax.transactions.line_items.list(transaction.id)
    assert [li.amount_tax for li in listed.data] == [2000, 100]

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.tax.transactions.create_from_calculation(
            {"calculation": calc.id, "reference": "invoice-42"}
        )
    assert (raised.value.http_status, raised.value.param) == (400, "reference")


def test_a_retried_transaction_is_replayed_not_refused(client: stripe.StripeClient) -> None:
    """Billow retries with its Idempotency-Key: the retry answers the first transaction."""
    calc = calculate(client, PARIS, {"amount": 100, "reference": "x"})
    params = {"calculation": calc.id, "reference": "invoice-7"}
    first = client.v1.tax.transactions.create_from_calculation(params, {"idempotency_key": "k7"})
    again = client.v1.tax.transactions.create_from_calculation(params, {"idempotency_key": "k7"})
    assert again.id == first.id


def test_a_full_reversal_gives_back_every_line(client: stripe.StripeClient) -> None:
    calc = calculate(
        client, PARIS, {"amount": 10000, "reference": "seat"}, {"amount": 500, "reference": "fee"}
    )
    original = client.v1.tax.transactions.create_from_calculation(
        {"calculation": calc.id, "reference": "invoice-1", "expand": ["line_items"]}
    )
    reversal = client.v1.tax.transactions.create_reversal(
        {
            "mode": "full",
            "original_transaction": original.id,
            "reference": "refund-1",
            "expand": ["line_items"],
        }
    )
    assert (reversal.type, reversal.reversal.original_transaction) == ("reversal", original.id)
    assert [
        (li.type, li.amount, li.amount_tax, li.reversal.original_line_item)
        for li in reversal.line_items.data
    ] == [
        ("reversal", -10000, -2000, original.line_items.data[0].id),
        ("reversal", -500, -100, original.line_items.data[1].id),
    ]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.tax.transactions.create_reversal(
            {"mode": "full", "original_transaction": original.id, "reference": "refund-2"}
        )
    assert raised.value.param == "mode"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.tax.transactions.create_reversal(
            {"mode": "full", "original_transaction": reversal.id, "reference": "refund-3"}
        )
    assert raised.value.param == "original_transaction"


def test_partial_reversals_never_give_back_more_than_a_line_had(
    client: stripe.StripeClient,
) -> None:
    calc = calculate(client, PARIS, {"amount": 10000, "reference": "seat"})
    original = client.v1.tax.transactions.create_from_calculation(
        {"calculation": calc.id, "reference": "invoice-2", "expand": ["line_items"]}
    )
    [seat] = original.line_items.data

    def give_back(reference: str, amount: int, tax: int) -> Any:
        return client.v1.tax.transactions.create_reversal(
            {
                "mode": "partial",
                "original_transaction": original.id,
                "reference": reference,
                "line_items": [
                    {
                        "original_line_item": seat.id,
                        "reference": "seat refund",
                        "amount": amount,
                        "amount_tax": tax,
                    }
                ],
                "expand": ["line_items"],
            }
        )

    half = give_back("refund-a", -5000, -1000)
    assert [(li.amount, li.amount_tax) for li in half.line_items.data] == [(-5000, -1000)]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        give_back("refund-b", -5001, -1000)
    assert raised.value.param == "line_items[0][amount]"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        give_back("refund-b", -5000, -1001)
    assert raised.value.param == "line_items[0][amount_tax]"
    rest = give_back("refund-b", -5000, -1000)
    assert rest.reversal.original_transaction == original.id


def test_a_transaction_needs_a_live_calculation(
    client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.tax.transactions.create_from_calculation(
            {"calculation": "taxcalc_missing", "reference": "r"}
        )
    assert (raised.value.code, raised.value.param) == ("resource_missing", "calculation")

    calc = calculate(client, PARIS, {"amount": 100, "reference": "x"})
    monkeypatch.setattr(tax, "_now", lambda: calc.expires_at + 1)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.tax.transactions.create_from_calculation(
            {"calculation": calc.id, "reference": "late"}
        )
    assert (raised.value.http_status, raised.value.param) == (400, "calculation")


def test_the_customer_tax_field_says_whether_automatic_tax_can_place_them(
    client: stripe.StripeClient,
) -> None:
    located = client.v1.customers.create({"address": SOUTH_SF})
    assert "tax" not in client.v1.customers.retrieve(located.id)
    located_tax = client.v1.customers.retrieve(located.id, {"expand": ["tax"]}).tax
    assert located_tax.to_dict() == {
        "automatic_tax": "supported",
        "ip_address": None,
        "location": {"country": "US", "source": "billing_address", "state": "CA"},
        "provider": "stripe",
    }
    nowhere = client.v1.customers.create({"name": "no address", "expand": ["tax"]})
    assert (nowhere.tax.automatic_tax, nowhere.tax.location) == ("unrecognized_location", None)
    moved = client.v1.customers.update(
        nowhere.id, {"address": {"country": "IE"}, "expand": ["tax"]}
    )
    assert moved.tax.location.to_dict() == {
        "country": "IE",
        "source": "billing_address",
        "state": None,
    }


# -- automatic tax on subscriptions ------------------------------------------------------


def _customer_with_card(
    client: stripe.StripeClient, clock: str, address: dict[str, str] | None
) -> str:
    customer = client.v1.customers.create(
        {"name": "acme", "test_clock": clock, **({"address": address} if address else {})}
    )
    method = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(method.id, {"customer": customer.id})
    client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    return customer.id


def _monthly_price(client: stripe.StripeClient, amount: int) -> str:
    product = client.v1.products.create({"name": "Pro Plan"})
    price = client.v1.prices.create(
        {
            "product": product.id,
            "currency": "eur",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
        }
    )
    return price.id


def _latest_invoice(client: stripe.StripeClient, sub_id: str) -> Any:
    return client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub_id).latest_invoice)


def test_a_subscription_with_automatic_tax_charges_its_invoices_with_tax(
    client: stripe.StripeClient,
) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer = _customer_with_card(client, clock.id, BERLIN)
    sub = client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": _monthly_price(client, 4900)}],
            "automatic_tax": {"enabled": True},
        }
    )
    assert sub.automatic_tax.to_dict() == {
        "enabled": True,
        "liability": {"type": "self"},
        "disabled_reason": None,
    }
    first = _latest_invoice(client, sub.id)
    [line] = first.lines.data
    [line_tax] = line.taxes
    assert (line_tax.amount, line_tax.taxable_amount, line_tax.tax_behavior) == (
        931,
        4900,
        "exclusive",
    )
    assert (line_tax.type, line_tax.taxability_reason) == ("tax_rate_details", "standard_rated")
    rate = client.v1.tax_rates.retrieve(line_tax.tax_rate_details.tax_rate)
    assert (rate.country, rate.percentage, rate.tax_type, rate.inclusive) == (
        "DE",
        19.0,
        "vat",
        False,
    )
    assert (first.automatic_tax.enabled, first.automatic_tax.status) == (True, "complete")
    assert first.automatic_tax.liability.type == "self"
    assert (first.subtotal, first.subtotal_excluding_tax, first.total_excluding_tax) == (
        4900,
        4900,
        4900,
    )
    assert (first.total, first.amount_due, first.amount_paid) == (5831, 5831, 5831)
    assert [(t.amount, t.taxable_amount) for t in first.total_taxes] == [(931, 4900)]
    [payment] = first["payments"]["data"]
    intent = client.v1.payment_intents.retrieve(payment["payment"]["payment_intent"])
    assert (intent.status, intent.amount) == ("succeeded", 5831)

    period_end = client.v1.subscriptions.retrieve(sub.id)["items"]["data"][0]["current_period_end"]
    client.v1.customers.update(customer, {"address": PARIS})  # tax follows the customer
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 3601})
    renewal = _latest_invoice(client, sub.id)
    assert (renewal.billing_reason, renewal.status) == ("subscription_cycle", "paid")
    assert (renewal.total, renewal.amount_paid) == (5880, 5880)
    assert renewal.lines.data[0].taxes[0].amount == 980


def test_prorations_are_taxed_line_by_line(client: stripe.StripeClient) -> None:
    start = int(time.time())
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start})
    customer = _customer_with_card(client, clock.id, PARIS)
    sub = client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": _monthly_price(client, 1000)}],
            "automatic_tax": {"enabled": True},
        }
    )
    item = sub["items"]["data"][0]
    halfway = (
        item["current_period_start"]
        + (item["current_period_end"] - item["current_period_start"]) // 2
    )
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": halfway})
    client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item["id"], "price": _monthly_price(client, 3000)}]}
    )
    client.v1.test_helpers.test_clocks.advance(
        clock.id, {"frozen_time": item["current_period_end"] + 3601}
    )
    renewal = _latest_invoice(client, sub.id)
    lines = renewal.lines.data
    assert all(line.taxes[0].amount == round(line.amount * 0.2) for line in lines)
    subtotal = sum(line.amount for line in lines)
    assert renewal.total == subtotal + sum(line.taxes[0].amount for line in lines)
    assert renewal.amount_paid == renewal.total


def test_automatic_tax_for_a_customer_without_an_address_creates_nothing(
    client: stripe.StripeClient,
) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer = _customer_with_card(client, clock.id, None)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.create(
            {
                "customer": customer,
                "items": [{"price": _monthly_price(client, 4900)}],
                "automatic_tax": {"enabled": True},
            }
        )
    assert (raised.value.http_status, raised.value.code) == (400, "customer_tax_location_invalid")
    assert client.v1.subscriptions.list({"customer": customer, "status": "all"}).data == []
    assert client.v1.events.list({"type": "customer.subscription.created"}).data == []


def test_automatic_tax_can_be_turned_on_later_for_a_customer_it_can_place(
    client: stripe.StripeClient,
) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    nowhere = _customer_with_card(client, clock.id, None)
    price = _monthly_price(client, 4900)
    untaxed = client.v1.subscriptions.create({"customer": nowhere, "items": [{"price": price}]})
    assert untaxed.automatic_tax.enabled is False
    assert _latest_invoice(client, untaxed.id).automatic_tax.enabled is False
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.subscriptions.update(untaxed.id, {"automatic_tax": {"enabled": True}})
    assert raised.value.code == "customer_tax_location_invalid"
    assert client.v1.subscriptions.retrieve(untaxed.id).automatic_tax.enabled is False

    client.v1.customers.update(nowhere, {"address": SOUTH_SF})
    taxed = client.v1.subscriptions.update(untaxed.id, {"automatic_tax": {"enabled": True}})
    assert taxed.automatic_tax.liability.type == "self"
    [updated] = client.v1.events.list({"type": "customer.subscription.updated"}).data
    assert updated.data.previous_attributes["automatic_tax"]["enabled"] is False


def test_a_renewal_for_a_customer_no_longer_placed_is_not_finalized(
    client: stripe.StripeClient,
) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer = _customer_with_card(client, clock.id, BERLIN)
    sub = client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": _monthly_price(client, 4900)}],
            "automatic_tax": {"enabled": True},
        }
    )
    period_end = sub["items"]["data"][0]["current_period_end"]
    client.v1.customers.update(customer, {"address": {"country": "JP"}})
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 7200})
    renewal = _latest_invoice(client, sub.id)
    assert (renewal.status, renewal.automatic_tax.status) == ("draft", "requires_location_inputs")
    assert renewal.last_finalization_error.code == "customer_tax_location_invalid"
    failed = client.v1.events.list({"type": "invoice.finalization_failed"}).data
    assert [event.data.object.id for event in failed] == [renewal.id]
