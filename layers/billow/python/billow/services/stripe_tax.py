"""Stripe Tax for the invoices Billow issues itself (a connection's ``automatic_tax``).

Each invoice gets one Tax Calculation, one line per fee (its amount less its coupons,
the fee's id as the reference), and its amounts become the invoice's taxes exactly. Once
the invoice is final, a Tax Transaction is recorded from the calculation (queued with
the invoice, so a crash never loses it), and the customer's Stripe Tax reports hold
Billow's invoices beside Stripe's own.

A customer Stripe Tax cannot locate is not billed untaxed in silence: the invoice is
taxed with Billow's own rates, as it would be without Stripe Tax, and the organization
is told (``customer.tax_provider_error``, Lago's webhook for a tax provider's refusal).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.customers import Customer
from billow.domain.errors import ProviderError
from billow.domain.events import OutboxEvent, internal_event, webhook_event
from billow.domain.integrations import StripeConnection
from billow.domain.invoice_math import AppliedTaxTotal, ServiceTaxes
from billow.domain.invoices import Invoice, StripeTaxLink
from billow.domain.organizations import BillingHints
from billow.ports import PaymentProvider, TaxCalculation, TaxRateApplied
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import customer_connection, stripe_account
from billow.topology import TAX_TRANSACTION_REQUESTED

TAX_NAME = "Stripe Tax"


def tax_account(
    deps: Dependencies, customer: Customer, hints: BillingHints | None = None
) -> tuple[StripeConnection, PaymentProvider] | None:
    """The customer's Stripe account when Stripe Tax computes its taxes. The connection
    is read first: without Stripe Tax, billing needs no gateway (no secret read, no
    Stripe SDK loaded by the invoice worker). Not even read when the organization's
    ``hints`` say none of its connections has Stripe Tax."""
    if hints is not None and not hints.stripe_tax_connections:
        return None
    connection = customer_connection(deps, customer)
    if connection is None or not connection.automatic_tax:
        return None
    return connection, deps.stripe_for(connection)


def calculate(
    gateway: PaymentProvider,
    customer: Customer,
    currency: str,
    invoice_id: str,
    lines: dict[str, int],
) -> tuple[TaxCalculation, ServiceTaxes]:
    """One calculation for the invoice's taxable lines (by fee key). Its key names the
    lines too: an invoice decided again on other amounts (a race) is calculated anew."""
    digest = hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()[:16]
    assert customer.stripe_customer_id
    calculation = gateway.calculate_tax(
        customer.stripe_customer_id,
        currency,
        {key: amount for key, amount in lines.items() if amount > 0},
        idempotency_key=f"billow-tax-{invoice_id}-{digest}",
    )
    rates = [
        AppliedTaxTotal(
            code="_".join(["stripe_tax", *_where(rate), rate.tax_type]).lower(),
            name=" ".join([*_where(rate), rate.tax_type]),
            rate=Decimal(rate.percentage),
            amount_cents=rate.amount,
            fees_amount_cents=rate.taxable_amount,
        )
        for rate in calculation.rates
    ]
    return calculation, ServiceTaxes(fee_taxes=calculation.line_taxes, rates=rates)


def _where(rate: TaxRateApplied) -> list[str]:
    """The jurisdiction of a rate: its country, and its state where it has one."""
    return [part for part in (rate.country, rate.state) if part]


def link(calculation: TaxCalculation) -> StripeTaxLink:
    return StripeTaxLink(calculation_id=calculation.id)


def transaction_requested(organization_id: str, invoice_id: str) -> OutboxEvent:
    return internal_event(organization_id, TAX_TRANSACTION_REQUESTED, {"invoice_id": invoice_id})


def provider_error_event(
    customer: Customer, connection: StripeConnection, error: ProviderError
) -> OutboxEvent:
    return webhook_event(
        customer.organization_id,
        "customer.tax_provider_error",
        "tax_provider_customer_error",
        {
            "lago_customer_id": customer.lago_id,
            "external_customer_id": customer.external_id,
            "tax_provider": "stripe_tax",
            "tax_provider_code": connection.code,
            "provider_error": error.as_provider_error(),
        },
    )


def record_transaction(deps: Dependencies, organization_id: str, invoice_id: str) -> bool:
    """Record the invoice's tax transaction once; False when there is nothing to record
    (no Stripe Tax calculation, or recorded already). The transaction's reference is the
    invoice's id, which Stripe keeps unique in the account."""
    invoice = deps.store.invoices.get(organization_id, invoice_id)
    if invoice is None or invoice.stripe_tax is None or invoice.stripe_tax.transaction_id:
        return False
    customer = deps.store.customers.get(organization_id, invoice.external_customer_id)
    account = stripe_account(deps, customer)
    if account is None:
        return False
    transaction_id = account[1].record_tax_transaction(
        invoice.stripe_tax.calculation_id,
        reference=invoice.lago_id,
        idempotency_key=f"billow-tax-transaction-{invoice.lago_id}",
    )

    def save() -> None:
        current: Invoice | None = deps.store.invoices.get(organization_id, invoice_id)
        if current is None or current.stripe_tax is None or current.stripe_tax.transaction_id:
            return
        recorded = current.stripe_tax.model_copy(update={"transaction_id": transaction_id})
        transaction = Transaction()
        deps.store.invoices.stage(
            transaction,
            current.model_copy(update={"stripe_tax": recorded, "version": current.version + 1}),
            current,
        )
        deps.store.commit(transaction)

    retry_on_race(save)
    return True
