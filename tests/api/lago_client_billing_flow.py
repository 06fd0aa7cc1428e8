"""Drives Billow's billing with Lago's official Python client; run by test_lago_client.py.

Runs in ``.venv/lago-client`` (see lago_client_flow.py). A tax, a plan, an add-on, a
subscription on a Stripe customer with a card, a one-off invoice, reading invoices back,
a payment link and a termination, all through the client. Prints what it saw as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lago_python_client.client import Client
from lago_python_client.models import (
    AddOn,
    Customer,
    CustomerBillingConfiguration,
    Plan,
    Subscription,
    Tax,
)
from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList, OneOffInvoice


def paid(client: Client, invoice_id: str) -> str:
    """Charging is asynchronous: poll until Stripe's answer is recorded (at most 20 s)."""
    deadline = time.monotonic() + 20
    status = ""
    while time.monotonic() < deadline:
        status = str(client.invoices.find(invoice_id).payment_status)
        if status != "pending":
            return status
        time.sleep(0.1)
    return status


def main(api_url: str, api_key: str, stripe_customer_id: str) -> dict[str, Any]:
    client = Client(api_key=api_key, api_url=api_url, max_retries=0)
    tax = client.taxes.create(Tax(name="VAT", code="vat_20", rate=20.0))
    plan = client.plans.create(
        Plan(
            name="Startup",
            code="startup",
            interval="monthly",
            amount_cents=9900,
            amount_currency="EUR",
            pay_in_advance=True,
            trial_period=0,
            tax_codes=["vat_20"],
        )
    )
    add_on = client.add_ons.create(
        AddOn(name="Setup", code="setup", amount_cents=5000, amount_currency="EUR")
    )
    client.customers.create(
        Customer(
            external_id="client-billed",
            currency="EUR",
            billing_configuration=CustomerBillingConfiguration(
                payment_provider="stripe",
                provider_customer_id=stripe_customer_id,
                sync_with_provider=False,
            ),
        )
    )
    subscription = client.subscriptions.create(
        Subscription(
            external_customer_id="client-billed",
            plan_code="startup",
            external_id="client-sub",
            billing_time="anniversary",
        )
    )
    one_off = client.invoices.create(
        OneOffInvoice(
            external_customer_id="client-billed",
            currency="EUR",
            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="setup", units=2)]),
        )
    )
    deadline = time.monotonic() + 20
    invoices: list[Any] = []
    while time.monotonic() < deadline and len(invoices) < 2:
        invoices = client.invoices.find_all({"external_customer_id": "client-billed"})["invoices"]
        time.sleep(0.1)
    subscription_invoice = next(i for i in invoices if i.invoice_type == "subscription")
    statuses = {
        "subscription": paid(client, subscription_invoice.lago_id),
        "one_off": paid(client, one_off.lago_id),
    }
    terminated = client.subscriptions.destroy("client-sub")
    plan_taxes = plan.taxes.__root__ if plan.taxes else []
    return {
        "tax_rate": tax.rate,
        "plan": [plan.code, plan.amount_cents, [t.code for t in plan_taxes]],
        "add_on": add_on.code,
        "subscription": [subscription.status, subscription.plan_code],
        "subscription_invoice": [
            subscription_invoice.fees_amount_cents,
            subscription_invoice.taxes_amount_cents,
            subscription_invoice.total_amount_cents,
        ],
        "one_off": [
            one_off.invoice_type,
            one_off.fees_amount_cents,
            one_off.total_amount_cents,
        ],
        "payment_statuses": statuses,
        "numbers": sorted(invoice.number for invoice in invoices),
        "terminated": terminated.status,
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
