"""Invoice use cases behind /api/v1/invoices: one-off invoices and reading invoices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billow.composition import Dependencies
from billow.domain.clock import IsoDateTime, iso, new_id, stable_id
from billow.domain.customers import DEFAULT_BILLING_ENTITY
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.identifiers import IdentifierList
from billow.domain.invoices import FeeItem, Invoice
from billow.domain.money import Currency
from billow.domain.subscriptions import PaymentMethodChoice
from billow.services.invoicing import FeeDraft, issue_invoice
from billow.services.lookups import check_payment_method, get_customer, require_taxes
from billow.services.retries import retry_on_race

MAX_FEES = 100


class OneOffFeeInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    add_on_code: str = Field(min_length=1, max_length=255)
    units: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?$", max_length=20)
    """Lago documents a string; its own clients send a number. Both are read exactly."""
    unit_amount_cents: int | None = Field(default=None, ge=0, le=10**13)
    invoice_display_name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=1000)
    from_datetime: IsoDateTime | None = None
    to_datetime: IsoDateTime | None = None
    tax_codes: IdentifierList | None = None

    @field_validator("units", mode="before")
    @classmethod
    def _number_as_text(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format(Decimal(str(value)).normalize(), "f")
        return value


class OneOffInvoiceInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    external_customer_id: str = Field(min_length=1, max_length=255)
    currency: Currency | None = None
    fees: list[OneOffFeeInput] = Field(min_length=1, max_length=MAX_FEES)
    payment_method: PaymentMethodChoice | None = None
    skip_psp: bool = False
    idempotency_key: str | None = Field(default=None, max_length=255)
    """Billow extension: the same key never issues two invoices (a retried POST)."""


class OneOffInvoiceBody(BaseModel):
    invoice: OneOffInvoiceInput


def _amount(units: str, unit_amount_cents: int) -> int:
    try:
        exact = Decimal(units) * unit_amount_cents
    except InvalidOperation as error:
        raise ValidationFailed({"units": ["invalid_value"]}) from error
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def create_one_off(
    deps: Dependencies, organization_id: str, body: OneOffInvoiceInput, now: datetime
) -> dict[str, object]:
    """Lago's one-off invoice: add-on fees, taxed, no coupons, finalized at once. An
    unknown add-on or tax code is Lago's 404, and a total Stripe could not charge a 422;
    either way nothing is issued."""
    customer = get_customer(deps, organization_id, body.external_customer_id)
    organization = deps.store.get_organization(organization_id)
    if organization is None:
        raise NotFound("organization")
    require_taxes(
        deps, organization_id, [code for fee in body.fees for code in fee.tax_codes or []]
    )
    drafts = []
    currency = body.currency
    for index, fee in enumerate(body.fees):
        add_on = deps.store.get_add_on(organization_id, fee.add_on_code)
        if add_on is None:
            raise NotFound("add_on")
        currency = currency or customer.currency or add_on.amount_currency
        unit = fee.unit_amount_cents if fee.unit_amount_cents is not None else add_on.amount_cents
        units = fee.units or "1"
        drafts.append(
            FeeDraft(
                key=f"add_on:{index}",
                item=FeeItem(
                    type="add_on",
                    code=add_on.code,
                    name=add_on.name,
                    invoice_display_name=fee.invoice_display_name or add_on.invoice_display_name,
                    lago_item_id=add_on.lago_id,
                ),
                amount_cents=_amount(units, unit),
                unit_amount_cents=unit,
                units=units,
                from_date=iso(fee.from_datetime) if fee.from_datetime else None,
                to_date=iso(fee.to_datetime) if fee.to_datetime else None,
                description=fee.description or add_on.description,
                tax_code_choices=[fee.tax_codes or [], add_on.tax_codes],
            )
        )
    if customer.currency and currency != customer.currency:
        raise ValidationFailed({"currency": ["currencies_does_not_match"]})
    check_payment_method(deps, customer, body.payment_method)
    invoice_id = (
        stable_id("one-off-invoice", organization_id, body.idempotency_key)
        if body.idempotency_key
        else new_id()
    )
    invoice = retry_on_race(
        lambda: issue_invoice(
            deps,
            organization,
            customer,
            invoice_id=invoice_id,
            invoice_type="one_off",
            currency=currency or "USD",
            drafts=drafts,
            apply_coupons=False,
            issued_at=now,
            payment_method=body.payment_method,
            skip_psp=body.skip_psp,
            refuse_uncollectable=True,
        )
    )
    return invoice.as_lago(customer.as_lago(), today=now.date())


def present(deps: Dependencies, invoice: Invoice, today: date) -> dict[str, object]:
    return present_all(deps, [invoice], today)[0]


def present_all(
    deps: Dependencies, invoices: Sequence[Invoice], today: date
) -> list[dict[str, object]]:
    """Lago lists invoices with their customer; each customer is read once. ``today`` is the
    day ``payment_overdue`` is judged on."""
    customers: dict[str, dict[str, object] | None] = {}
    shown = []
    for invoice in invoices:
        if invoice.external_customer_id not in customers:
            customer = deps.store.get_customer(
                invoice.organization_id, invoice.external_customer_id
            )
            customers[invoice.external_customer_id] = customer.as_lago() if customer else None
        shown.append(invoice.as_lago(customers[invoice.external_customer_id], today=today))
    return shown


def get(deps: Dependencies, organization_id: str, lago_id: str, today: date) -> dict[str, object]:
    invoice = deps.store.get_invoice(organization_id, lago_id)
    if invoice is None:
        raise NotFound("invoice")
    return present(deps, invoice, today)


class InvoiceFilters(BaseModel):
    """Lago's invoice list filters; ``None`` (or empty) filters nothing."""

    external_customer_id: str | None = None
    statuses: Sequence[str] | None = None
    payment_statuses: Sequence[str] | None = None
    invoice_type: str | None = None
    issuing_date_from: date | None = None
    issuing_date_to: date | None = None
    payment_overdue: bool | None = None
    currency: str | None = None
    amount_from: int | None = None
    amount_to: int | None = None
    self_billed: bool | None = None
    billing_entity_codes: Sequence[str] | None = None
    search_term: str | None = None
    """Part of the invoice number, the invoice id, or part of the customer's name, first or
    last name, external id or e-mail (the customer's only when no customer is named)."""


def _customers_matching(deps: Dependencies, organization_id: str, term: str) -> set[str]:
    """External ids of the customers ``term`` finds (one Query for the organization)."""
    fields = ("name", "firstname", "lastname", "external_id", "email")
    return {
        customer.external_id
        for customer in deps.store.list_customers(organization_id)
        if any(term in (getattr(customer, field) or "").casefold() for field in fields)
    }


def list_invoices(
    deps: Dependencies, organization_id: str, filters: InvoiceFilters, today: date
) -> list[Invoice]:
    """The organization's invoices that pass every filter, newest first.

    A customer nobody knows filters everything out, as in Lago (no 404 here); a billing
    entity other than Billow's single one is a 404, as Lago answers for unknown codes."""
    if any(code != DEFAULT_BILLING_ENTITY for code in filters.billing_entity_codes or ()):
        raise NotFound("billing_entity")
    term = (filters.search_term or "").strip().casefold()
    found_customers = (
        _customers_matching(deps, organization_id, term)
        if term and filters.external_customer_id is None
        else set()
    )

    def searched(invoice: Invoice) -> bool:
        return (
            term in invoice.number.casefold()
            or term == invoice.lago_id
            or invoice.external_customer_id in found_customers
        )

    def kept(invoice: Invoice) -> bool:
        checks = (
            filters.external_customer_id in (None, invoice.external_customer_id),
            not filters.statuses or invoice.status in filters.statuses,
            not filters.payment_statuses or invoice.payment_status in filters.payment_statuses,
            filters.invoice_type in (None, invoice.invoice_type),
            filters.currency in (None, invoice.currency),
            filters.self_billed in (None, invoice.self_billed),
            filters.payment_overdue in (None, invoice.is_payment_overdue(today)),
            filters.issuing_date_from is None
            or date.fromisoformat(invoice.issuing_date) >= filters.issuing_date_from,
            filters.issuing_date_to is None
            or date.fromisoformat(invoice.issuing_date) <= filters.issuing_date_to,
            filters.amount_from is None or invoice.total_amount_cents >= filters.amount_from,
            filters.amount_to is None or invoice.total_amount_cents <= filters.amount_to,
            not term or searched(invoice),
        )
        return all(checks)

    return [invoice for invoice in deps.store.list_invoices(organization_id) if kept(invoice)]
