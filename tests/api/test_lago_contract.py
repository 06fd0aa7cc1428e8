"""Billow's responses and webhooks against Lago's published OpenAPI document.

The document is the contract (``../shared/reference/lago-openapi.yaml``); each body is
validated against the schema Lago declares for it, with every ``$ref`` resolved.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.api.billing_helpers import invoices_of
from tests.api.conftest import StripeOrg, revoke_stripe_key
from tests.api.test_customers import webhooks
from tests.api.test_usage_billing import (
    charge,
    metric,
    period_of,
    send,
    subscribe,
    usage_plan,
)

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "reference" / "lago-openapi.yaml"

pytestmark = pytest.mark.skipif(
    not CONTRACT.exists(), reason=f"Lago's contract not found at {CONTRACT}"
)


@cache
def _document() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(CONTRACT.read_text(), Loader=loader)  # type: ignore[no-any-return]


@cache
def _registry() -> Registry:
    return Registry().with_resource("lago", DRAFT202012.create_resource(_document()))


# The document types these as non-nullable strings, but Lago's own serializer sends null
# until a payment provider customer exists (as Billow does before Stripe answers).
NULL_UNTIL_LINKED = {
    ("billing_configuration", "payment_provider"),
    ("billing_configuration", "payment_provider_code"),
    ("billing_configuration", "provider_customer_id"),
}
# Typed as non-nullable, but null in Lago's subscription serializer: no credit note choice
# unless the plan is paid in advance, and no payment method id for the customer's default.
NULL_IN_LAGOS_SUBSCRIPTIONS = {
    ("subscription", "on_termination_credit_note"),
    ("payment_method", "payment_method_id"),
}
# Typed as strings too, but null in Lago until the file exists (Billow renders no PDFs).
NULL_UNTIL_GENERATED = ("file_url",)


def _check(body: Any, pointer: str) -> None:
    validator = Draft202012Validator({"$ref": f"lago#{pointer}"}, registry=_registry())
    errors = sorted(
        (
            error
            for error in validator.iter_errors(body)
            if not (
                error.instance is None
                and (
                    tuple(error.path)[-2:] in NULL_UNTIL_LINKED | NULL_IN_LAGOS_SUBSCRIPTIONS
                    or tuple(error.path)[-1:] == NULL_UNTIL_GENERATED
                )
            )
        ),
        key=lambda error: list(error.path),
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def check(body: Any, schema: str) -> None:
    _check(body, f"/components/schemas/{schema}")


def check_webhook(body: Any, name: str) -> None:
    _check(body, f"/webhooks/{name}/post/requestBody/content/application~1json/schema")


def test_customer_and_payment_method_bodies_match_lago(
    stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    status, created = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "contract",
                "name": "Contract",
                "email": "c@example.test",
                "country": "FR",
                "currency": "EUR",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "sync": True,
                    "sync_with_provider": True,
                },
                "metadata": [{"key": "k", "value": "v", "display_in_invoice": False}],
            }
        },
    )
    assert status == 200
    check(created, "Customer")
    check(stripe_org.api.get("/customers/contract")[1], "Customer")
    check(stripe_org.api.get("/customers")[1], "CustomersPaginated")
    check(stripe_org.api.get("/customers/contract/payment_methods")[1], "PaymentMethodsPaginated")

    wait_for(lambda: webhooks(subscribed, "customer.checkout_url_generated"))
    check_webhook(webhooks(subscribed, "customer.created")[0], "customer_created")
    check_webhook(
        webhooks(subscribed, "customer.payment_provider_created")[0],
        "customer_payment_provider_created",
    )
    check_webhook(
        webhooks(subscribed, "customer.checkout_url_generated")[0],
        "customer_checkout_url_generated",
    )


def test_webhook_endpoint_and_error_bodies_match_lago(org: Any) -> None:
    _status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": "https://c.test/h"}}
    )
    check(body, "WebhookEndpoint")
    check(org.api.get("/webhook_endpoints")[1], "WebhookEndpointsPaginated")
    check(org.api.get("/customers/missing")[1], "ApiErrorNotFound")
    check(org.api.post("/customers", json={"customer": {}})[1], "ApiErrorUnprocessableEntity")


def test_provider_error_webhooks_match_lago(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    revoke_stripe_key(local_billow, stripe_org.secret_key)
    stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "broken",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "sync_with_provider": True,
                    "sync": True,
                },
            }
        },
    )
    wait_for(lambda: webhooks(subscribed, "customer.payment_provider_error"))
    check_webhook(
        webhooks(subscribed, "customer.payment_provider_error")[0],
        "customer_payment_provider_error",
    )


def test_catalog_bodies_match_lago(org: Any, subscribed: Any, wait_for: Any) -> None:
    _status, tax = org.api.post(
        "/taxes", json={"tax": {"name": "VAT", "code": "vat", "rate": "20"}}
    )
    check(tax, "Tax")
    check(org.api.get("/taxes")[1], "TaxesPaginated")

    plan = {
        "name": "Startup",
        "invoice_display_name": "Startup plan",
        "description": "For small teams",
        "code": "startup",
        "interval": "monthly",
        "amount_cents": 9900,
        "amount_currency": "EUR",
        "trial_period": 7.5,
        "pay_in_advance": True,
        "tax_codes": ["vat"],
    }
    check(org.api.post("/plans", json={"plan": plan})[1], "Plan")
    check(org.api.put("/plans/startup", json={"plan": {"name": "Startup 2"}})[1], "Plan")
    check(org.api.get("/plans")[1], "PlansPaginated")

    add_on = {"name": "Setup", "code": "setup", "amount_cents": 500, "amount_currency": "EUR"}
    check(org.api.post("/add_ons", json={"add_on": {**add_on, "tax_codes": ["vat"]}})[1], "AddOn")
    check(org.api.get("/add_ons")[1], "AddOnsPaginated")

    coupons = [
        {
            "name": "Welcome",
            "code": "welcome",
            "coupon_type": "fixed_amount",
            "amount_cents": 1000,
            "amount_currency": "EUR",
            "frequency": "once",
            "expiration": "no_expiration",
        },
        {
            "name": "Ten",
            "code": "ten",
            "coupon_type": "percentage",
            "percentage_rate": "10.5",
            "frequency": "recurring",
            "frequency_duration": 3,
            "expiration": "time_limit",
            "expiration_at": "2099-01-01T00:00:00Z",
            "applies_to": {"plan_codes": ["startup"]},
        },
    ]
    for coupon in coupons:
        check(org.api.post("/coupons", json={"coupon": coupon})[1], "Coupon")
    check(org.api.get("/coupons")[1], "CouponsPaginated")

    customer = {
        "external_id": "taxed",
        "currency": "EUR",
        "tax_codes": ["vat"],
        "billing_configuration": {"sync_with_provider": False},
    }
    check(org.api.post("/customers", json={"customer": customer})[1], "Customer")
    for code in ("welcome", "ten"):
        applied = {"external_customer_id": "taxed", "coupon_code": code}
        check(
            org.api.post("/applied_coupons", json={"applied_coupon": applied})[1], "AppliedCoupon"
        )
    org.api.delete("/coupons/welcome")
    check(org.api.get("/applied_coupons")[1], "AppliedCouponsPaginated")
    check(org.api.get("/customers/taxed/applied_coupons")[1], "AppliedCouponsPaginated")

    check(org.api.get("/plans/missing")[1], "ApiErrorNotFound")
    check(org.api.post("/plans", json={"plan": {"name": "x"}})[1], "ApiErrorUnprocessableEntity")
    check(org.api.post("/plans", json={})[1], "ApiErrorBadRequest")

    org.api.delete("/plans/startup")
    wait_for(lambda: webhooks(subscribed, "plan.deleted"))
    for kind in ("created", "updated", "deleted"):
        check_webhook(webhooks(subscribed, f"plan.{kind}")[0], f"plan_{kind}")


def test_organization_customer_and_invoice_bodies_match_lago(org: Any) -> None:
    default_tax = {"name": "VAT", "code": "vat", "rate": "20", "applied_to_organization": True}
    assert org.api.post("/taxes", json={"tax": default_tax})[0] == 200
    hook = {"webhook_endpoint": {"webhook_url": "https://c.test/hooks"}}
    assert org.api.post("/webhook_endpoints", json=hook)[0] == 200
    status, body = org.api.put(
        "/organizations",
        json={
            "organization": {
                "email": "billing@contract.test",
                "country": "US",
                "default_currency": "USD",
                "address_line1": "1 Main St",
                "city": "New York",
                "state": "NY",
                "zipcode": "10001",
                "legal_name": "Contract Inc.",
                "net_payment_term": 15,
                "timezone": "America/New_York",
                "email_settings": ["invoice.finalized"],
                "billing_configuration": {"invoice_footer": "Thanks", "document_locale": "en"},
            }
        },
    )
    assert status == 200, body
    check(body, "Organization")
    assert body["organization"]["taxes"][0]["code"] == "vat"
    assert body["organization"]["webhook_url"] == "https://c.test/hooks"

    # Without a payment provider, sync_with_provider is still the boolean Lago promises.
    status, customer = org.api.post("/customers", json={"customer": {"external_id": "plain"}})
    assert status == 200
    check(customer, "Customer")
    assert customer["customer"]["billing_configuration"]["sync_with_provider"] is False

    add_on = {"name": "Setup", "code": "setup", "amount_cents": 500, "amount_currency": "USD"}
    assert org.api.post("/add_ons", json={"add_on": add_on})[0] == 200
    status, invoice = org.api.post(
        "/invoices",
        json={"invoice": {"external_customer_id": "plain", "fees": [{"add_on_code": "setup"}]}},
    )
    assert status == 200, invoice
    check(invoice, "Invoice")
    check(org.api.get("/invoices?invoice_type=one_off")[1], "InvoicesPaginated")
    endpoint = org.api.get("/webhook_endpoints")[1]["webhook_endpoints"][0]
    org.api.delete(f"/webhook_endpoints/{endpoint['lago_id']}")  # c.test answers nothing


def test_a_stripe_customer_says_whether_it_syncs_with_stripe(stripe_org: StripeOrg) -> None:
    """Unsaid, Billow follows the connection's ``create_customers`` (off for this one), and
    shows the boolean it decided."""
    billing = {"payment_provider": "stripe"}
    status, body = stripe_org.api.post(
        "/customers",
        json={"customer": {"external_id": "unsynced", "billing_configuration": billing}},
    )
    assert status == 200, body
    check(body, "Customer")
    assert body["customer"]["billing_configuration"]["sync_with_provider"] is False
    assert body["customer"]["billing_configuration"]["provider_customer_id"] is None


def test_usage_bodies_match_lago(local_billow: Any, org: Any, subscribed: Any) -> None:
    """Metrics, plans with charges, events, usage, the invoice's charge fees, and the
    event.error webhook, each against the schema Lago declares for it."""
    calls = metric(org, "calls", "count_agg", filters=[{"key": "region", "values": ["eu"]}])
    check({"billable_metric": calls}, "BillableMetric")
    check(org.api.get("/billable_metrics")[1], "BillableMetricsPaginated")
    storage = metric(org, "storage", "sum_agg", field_name="gb")
    plan = usage_plan(
        org,
        "usage",
        [
            charge(
                calls,
                "standard",
                properties={"amount": "0.1"},
                filters=[{"values": {"region": ["eu"]}, "properties": {"amount": "0.2"}}],
            ),
            charge(
                storage,
                "graduated",
                properties={
                    "graduated_ranges": [
                        {
                            "from_value": 0,
                            "to_value": 5,
                            "flat_amount": "1",
                            "per_unit_amount": "1",
                        },
                        {
                            "from_value": 5,
                            "to_value": None,
                            "flat_amount": "0",
                            "per_unit_amount": "0.5",
                        },
                    ]
                },
            ),
        ],
        description="Pay as you go",  # the contract types these as strings, not null
        invoice_display_name="Usage",
        usage_thresholds=[{"threshold_display_name": "Five", "amount_cents": 500}],
    )
    check({"plan": plan}, "Plan")
    check(org.api.get("/plans/usage/charges")[1], "ChargesPaginated")
    subscription = subscribe(org, plan, "usage-contract")
    start, end = period_of(subscription)
    status, body = org.api.post(
        "/events",
        json={
            "event": {
                "transaction_id": "c-1",
                "external_subscription_id": "usage-contract",
                "code": "calls",
                "timestamp": int(start.timestamp()) + 60,
                "properties": {"region": "eu"},
            }
        },
    )
    assert status == 200, body
    check(body, "EventCreated")
    send(org, "usage-contract", "storage", start + (end - start) / 4, "s-1", gb=8)
    send(org, "usage-contract", "nothing", start + (end - start) / 4, "n-1")
    local_billow.wait_idle()
    check(org.api.get("/events/c-1")[1], "Event")
    status, body = org.api.get(
        "/customers/usage-contract-customer/current_usage?external_subscription_id=usage-contract"
    )
    assert status == 200, body
    check(body, "CustomerUsage")
    status, body = org.api.get(
        "/customers/usage-contract-customer/past_usage?external_subscription_id=usage-contract"
    )
    assert status == 200, body
    check(body, "CustomerPastUsage")
    check_webhook(webhooks(subscribed, "event.error")[0], "event_error")

    # 8 GB: 5 × 1 + 1 and 3 × 0.5 = 7.50, past the plan's 5.00 threshold.
    (progressive,) = invoices_of(org, "usage-contract-customer")
    assert progressive["invoice_type"] == "progressive_billing"
    check(org.api.get(f"/invoices/{progressive['lago_id']}")[1], "Invoice")
    check_webhook(
        webhooks(subscribed, "subscription.usage_threshold_reached")[0],
        "subscription_usage_threshold_reached",
    )

    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    status, listed = org.api.get("/invoices?external_customer_id=usage-contract-customer")
    (invoice,) = [i for i in listed["invoices"] if i["invoice_type"] == "subscription"]
    assert {fee["item"]["type"] for fee in invoice["fees"]} == {"subscription", "charge"}
    check(org.api.get(f"/invoices/{invoice['lago_id']}")[1], "Invoice")
