"""Stripe Tax (a connection's ``automatic_tax``): Stripe's subscriptions and checkouts are
taxed by Stripe, Billow's own invoices are taxed by a Tax Calculation whose amounts they
carry and whose Tax Transaction is recorded once they are final, and a customer Stripe
Tax cannot locate is reported, never billed untaxed in silence. The emulator's rates:
FR 20 %, DE 19 %."""

from __future__ import annotations

from typing import Any

import pytest

from billow.composition import Dependencies, dependencies
from billow.domain.integrations import StripeConnection
from billow.services.stripe_tax import tax_account
from tests.api.billing_helpers import (
    create_plan,
    invoices_of,
    payment_intents,
    stripe_customer,
    webhooks,
)
from tests.api.conftest import StripeOrg, new_stripe_key, stripe_client
from tests.api.test_stripe_checkout import (
    CHECKOUT,
    checkout,
    new_customer,
    session_of,
    subscription,
)
from tests.api.test_stripe_subscription_sync import billow_and_stripe_invoices, mirrored, subscribe
from tests.support import http

PARIS = {"line1": "1 Rue de Rivoli", "city": "Paris", "postal_code": "75001", "country": "FR"}
BERLIN = {"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"}


def connect(local_billow: Any, org: Any, **options: bool) -> StripeOrg:
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": key, "automatic_tax": True, **options}},
    )
    assert status == 200 and body["integration"]["automatic_tax"] is True, body
    return StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


@pytest.fixture
def taxed_sync(local_billow: Any, org: Any) -> StripeOrg:
    """Stripe bills synced subscriptions, and Stripe Tax taxes everything."""
    return connect(local_billow, org, sync_catalog=True, sync_subscriptions=True)


def test_stripe_billed_subscriptions_are_taxed_by_stripe(
    local_billow: Any, taxed_sync: StripeOrg, wait_for: Any
) -> None:
    create_plan(taxed_sync, "pro", amount_cents=4900)
    stripe_customer(taxed_sync, "acme", wait_for=wait_for, address=PARIS)
    subscribe(taxed_sync, "acme", "pro")
    sub = mirrored(taxed_sync, "sub-1", wait_for)
    stripe_sub = taxed_sync.stripe.v1.subscriptions.retrieve(sub["stripe_sync"]["stripe_id"])
    assert stripe_sub.automatic_tax.enabled is True
    first = taxed_sync.stripe.v1.invoices.retrieve(stripe_sub.latest_invoice)
    assert (first.subtotal, first.total, first.amount_paid) == (4900, 5880, 5880)
    [copied] = wait_for(lambda: billow_and_stripe_invoices(taxed_sync, "acme")[1])
    assert (copied["taxes_amount_cents"], copied["total_amount_cents"]) == (980, 5880)


def test_a_customer_stripe_tax_cannot_locate_is_reported_not_billed_untaxed(
    local_billow: Any, taxed_sync: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(taxed_sync, "pro", amount_cents=4900, pay_in_advance=True)
    stripe_id = stripe_customer(taxed_sync, "nowhere", wait_for=wait_for)  # no address
    subscribe(taxed_sync, "nowhere", "pro")
    sub = mirrored(taxed_sync, "sub-1", wait_for, status="failed")
    assert sub["stripe_sync"]["error"]["code"] == "customer_tax_location_invalid"
    [failed] = wait_for(lambda: webhooks(subscribed, "stripe_sync.failed"))
    assert failed["stripe_sync_error"]["stripe_error"]["code"] == "customer_tax_location_invalid"
    assert taxed_sync.stripe.v1.subscriptions.list({"customer": stripe_id}).data == []

    # Billow bills it instead; Stripe Tax refuses its invoice too, which is reported and
    # taxed with Billow's own rates (none here) rather than lost.
    [invoice] = wait_for(lambda: invoices_of(taxed_sync, "nowhere"))
    assert invoice["stripe_tax"] is None and invoice["total_amount_cents"] == 4900
    [refused] = wait_for(lambda: webhooks(subscribed, "customer.tax_provider_error"))
    error = refused["tax_provider_customer_error"]
    assert (error["external_customer_id"], error["tax_provider"]) == ("nowhere", "stripe_tax")
    assert error["provider_error"]["error_code"] == "customer_tax_location_invalid"


def test_billows_own_invoices_are_taxed_by_stripe_tax_and_recorded(
    local_billow: Any, org: Any, wait_for: Any
) -> None:
    taxed = connect(local_billow, org)  # no sync: Billow bills, Stripe Tax taxes
    create_plan(taxed, "pro", amount_cents=10_000, pay_in_advance=True)
    stripe_id = stripe_customer(taxed, "acme", wait_for=wait_for, address=BERLIN)
    subscribe(taxed, "acme", "pro")

    def recorded() -> dict[str, Any] | None:
        invoices = invoices_of(taxed, "acme")
        done = invoices and (invoices[0]["stripe_tax"] or {}).get("transaction_id")
        return invoices[0] if done else None

    invoice = wait_for(recorded)
    assert (invoice["taxes_amount_cents"], invoice["total_amount_cents"]) == (1900, 11_900)
    [applied] = invoice["applied_taxes"]
    assert (applied["tax_code"], applied["tax_rate"], applied["amount_cents"]) == (
        "stripe_tax_de_vat",
        19.0,
        1900,
    )
    [fee] = invoice["fees"]
    assert (fee["taxes_amount_cents"], fee["total_amount_cents"]) == (1900, 11_900)

    calculation = taxed.stripe.v1.tax.calculations.retrieve(invoice["stripe_tax"]["calculation_id"])
    assert (calculation.customer, calculation.tax_amount_exclusive) == (stripe_id, 1900)
    transaction = taxed.stripe.v1.tax.transactions.retrieve(invoice["stripe_tax"]["transaction_id"])
    assert transaction.reference == invoice["lago_id"]
    [line] = taxed.stripe.v1.tax.transactions.line_items.list(transaction.id).data
    assert (line.reference, line.amount, line.amount_tax) == (fee["lago_id"], 10_000, 1900)
    # The charge is the taxed total.
    [charge] = wait_for(lambda: payment_intents(taxed, stripe_id))
    assert charge["amount"] == 11_900


def test_a_checkout_is_taxed_and_the_address_it_took_comes_back_to_billow(
    local_billow: Any, taxed_sync: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(taxed_sync, "pro", amount_cents=4900)
    new_customer(taxed_sync)  # no address: the page asks for the one Stripe Tax needs
    status, body = checkout(
        taxed_sync,
        checkout={**CHECKOUT, "collect_phone_number": True},
        billing_time="anniversary",  # a whole first period (calendar billing prorates it)
    )
    assert status == 200, body
    url = body["subscription"]["checkout_url"]
    page = http("GET", url)[2]
    assert 'name="address_country"' in page and 'name="phone"' in page
    form = {
        "address_line1": PARIS["line1"],
        "address_city": PARIS["city"],
        "address_postal_code": PARIS["postal_code"],
        "address_country": "FR",
        "phone": "+33 1 00 00 00 00",
        "card": "4242424242424242",
    }
    assert http("POST", url, form)[0] == 303
    wait_for(lambda: subscription(taxed_sync)["status"] == "active")
    done = session_of(taxed_sync, url)
    assert (done.amount_subtotal, done.amount_total, done.total_details.amount_tax) == (
        4900,
        5880,
        980,
    )
    assert taxed_sync.stripe.v1.subscriptions.retrieve(done.subscription).automatic_tax.enabled

    def moved() -> dict[str, Any] | None:
        customer = taxed_sync.api.get("/customers/acme")[1]["customer"]
        return customer if customer["country"] == "FR" else None

    customer = wait_for(moved)
    assert (customer["address_line1"], customer["zipcode"], customer["city"]) == (
        PARIS["line1"],
        "75001",
        "Paris",
    )
    assert any(
        body["customer"]["country"] == "FR" for body in webhooks(subscribed, "customer.updated")
    )


@pytest.mark.parametrize("automatic_tax", [False, True])
def test_billing_builds_a_stripe_gateway_only_when_stripe_tax_is_on(
    local_billow: Any, org: Any, wait_for: Any, monkeypatch: pytest.MonkeyPatch, automatic_tax: bool
) -> None:
    """Without Stripe Tax, deciding an invoice's taxes reads the connection and stops there:
    no secret read, no Stripe SDK loaded in the invoice worker."""
    connected = connect(local_billow, org) if automatic_tax else None
    if connected is None:
        key = new_stripe_key()
        status, body = org.api.post(
            "/integrations/stripe", json={"integration": {"secret_key": key}}
        )
        assert status == 200, body
        connected = StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))
    stripe_customer(connected, "acme", wait_for=wait_for)
    customer = dependencies().store.customers.get(org.id, "acme")
    assert customer is not None and customer.stripe_customer_id
    gateways: list[str] = []
    real = Dependencies.stripe_for

    def watched(deps: Dependencies, connection: StripeConnection) -> Any:
        gateways.append(connection.code)
        return real(deps, connection)

    monkeypatch.setattr(Dependencies, "stripe_for", watched)
    account = tax_account(dependencies(), customer)
    assert (account is not None) is automatic_tax
    assert len(gateways) == (1 if automatic_tax else 0)


def test_turning_stripe_tax_on_and_off_reaches_the_next_invoice(
    local_billow: Any, org: Any, wait_for: Any
) -> None:
    """Billing reads a customer's connection only when the organization's hint says some
    connection has Stripe Tax: the hint follows the connection's changes, so the invoice
    after each change is taxed the way the connection then says."""
    key = new_stripe_key()

    def set_stripe_tax(on: bool) -> None:
        status, body = org.api.post(
            "/integrations/stripe", json={"integration": {"secret_key": key, "automatic_tax": on}}
        )
        assert status == 200 and body["integration"]["automatic_tax"] is on, body

    def hint() -> frozenset[str]:
        organization = dependencies().store.organizations.get(org.id)
        assert organization is not None and organization.billing_hints is not None
        return organization.billing_hints.stripe_tax_connections

    set_stripe_tax(False)
    assert hint() == frozenset()
    connected = StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))
    create_plan(connected, "pro", amount_cents=10_000, pay_in_advance=True)
    stripe_customer(connected, "acme", wait_for=wait_for, address=BERLIN)

    set_stripe_tax(True)
    assert hint() == {"stripe"}
    subscribe(connected, "acme", "pro", external_id="taxed")
    taxed = wait_for(lambda: invoices_of(connected, "acme") or None)[0]
    assert taxed["taxes_amount_cents"] == 1900
    assert taxed["applied_taxes"][0]["tax_code"] == "stripe_tax_de_vat"

    set_stripe_tax(False)
    assert hint() == frozenset()
    subscribe(connected, "acme", "pro", external_id="untaxed")
    untaxed = wait_for(
        lambda: (
            [i for i in invoices_of(connected, "acme") if i["lago_id"] != taxed["lago_id"]] or None
        )
    )
    assert (untaxed[0]["taxes_amount_cents"], untaxed[0]["stripe_tax"]) == (0, None)
