"""Invoice use cases behind /api/v1/invoices: one-off invoices and reading invoices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billow.adapters.billing_records import INVOICE_STATES, InvoiceSelection, invoice_state
from billow.composition import Dependencies
from billow.domain.clock import IsoDateTime, iso, new_id, stable_id
from billow.domain.customers import DEFAULT_BILLING_ENTITY
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.identifiers import IdentifierList
from billow.domain.invoices import FeeItem, Invoice, InvoiceStatus, PaymentStatus
from billow.domain.money import Currency
from billow.domain.subscriptions import PaymentMethodChoice
from billow.services.invoice_numbering import await_number
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
    organization = deps.store.organizations.get(organization_id)
    if organization is None:
        raise NotFound("organization")
    require_taxes(
        deps, organization_id, [code for fee in body.fees for code in fee.tax_codes or []]
    )
    drafts = []
    currency = body.currency
    for index, fee in enumerate(body.fees):
        add_on = deps.store.add_ons.get(organization_id, fee.add_on_code)
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
    if not invoice.sequential_id:  # waiting: answer with its number, as Lago does
        invoice = await_number(deps, organization_id, invoice.lago_id) or invoice
    return invoice.as_lago(customer.as_lago(), today=now.date())


def present(deps: Dependencies, invoice: Invoice, today: date) -> dict[str, object]:
    return present_all(deps, [invoice], today)[0]


def present_all(
    deps: Dependencies, invoices: Sequence[Invoice], today: date
) -> list[dict[str, object]]:
    """Lago lists invoices with their customer; the customers are read together (one
    BatchGetItem). ``today`` is the day ``payment_overdue`` is judged on."""
    if not invoices:
        return []
    found = deps.store.customers.get_many(
        invoices[0].organization_id, (invoice.external_customer_id for invoice in invoices)
    )
    customers = {customer.external_id: customer.as_lago() for customer in found}
    return [
        invoice.as_lago(customers.get(invoice.external_customer_id), today=today)
        for invoice in invoices
    ]


def get(deps: Dependencies, organization_id: str, lago_id: str, today: date) -> dict[str, object]:
    invoice = deps.store.invoices.get(organization_id, lago_id)
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
        for customer in deps.store.customers.list_all(organization_id)
        if any(term in (getattr(customer, field) or "").casefold() for field in fields)
    }


def _states(filters: InvoiceFilters) -> list[str] | None:
    """The (status, payment status) lists the filters name; ``None``: every invoice.

    Lago's statuses Billow never gives an invoice (``failed``, ``pending``) name no list,
    and an overdue invoice can only be finalized and not paid."""
    statuses = set(filters.statuses or get_args(InvoiceStatus))
    payments = set(filters.payment_statuses or get_args(PaymentStatus))
    if filters.payment_overdue:
        statuses &= {"finalized"}
        payments -= {"succeeded"}
    states = [
        invoice_state(status, payment)
        for status in get_args(InvoiceStatus)
        for payment in get_args(PaymentStatus)
        if status in statuses and payment in payments
    ]
    return None if len(states) == len(INVOICE_STATES) else states


def list_page(
    deps: Dependencies,
    organization_id: str,
    filters: InvoiceFilters,
    today: date,
    page: int,
    per_page: int,
) -> tuple[list[Invoice], int]:
    """Page ``page`` of the organization's invoices that pass every filter, newest first
    (Lago's order: issuing date, then creation), and how many pass.

    Customer, statuses, payment statuses and issuing dates are served by the list
    indexes: the page reads the index keys before it and its own invoices only, and the
    count comes from counters (from the keys in the date range when dates are given).
    The other filters (type, currency, amounts, self-billed, overdue on today's date,
    search) are not keys: the invoices the keyed filters leave are read and checked, so
    the count stays exact. A customer nobody knows filters everything out, as in Lago
    (no 404 here); a billing entity other than Billow's single one is a 404, as Lago
    answers for unknown codes."""
    if any(code != DEFAULT_BILLING_ENTITY for code in filters.billing_entity_codes or ()):
        raise NotFound("billing_entity")
    states = _states(filters)
    if states == []:
        return [], 0
    issued_between = (
        (
            (filters.issuing_date_from or date.min).isoformat(),
            (filters.issuing_date_to or date.max).isoformat(),
        )
        if filters.issuing_date_from or filters.issuing_date_to
        else None
    )
    selection = InvoiceSelection(
        customer=filters.external_customer_id, states=states, issued_between=issued_between
    )
    skip = (page - 1) * per_page
    kept = _unkeyed_check(deps, organization_id, filters, today)
    if kept is None:
        found = deps.store.invoices.list_page(organization_id, selection, skip, per_page)
        return found, deps.store.invoices.count(organization_id, selection)
    matching = [
        invoice
        for invoice in deps.store.invoices.list_in(organization_id, selection)
        if kept(invoice)
    ]
    return matching[skip : skip + per_page], len(matching)


def _unkeyed_check(
    deps: Dependencies, organization_id: str, filters: InvoiceFilters, today: date
) -> Callable[[Invoice], bool] | None:
    """The filters no key serves, as a check of one invoice (``None`` when none is set)."""
    term = (filters.search_term or "").strip().casefold()
    if not (
        term
        or filters.invoice_type is not None
        or filters.currency is not None
        or filters.self_billed is not None
        or filters.payment_overdue is not None
        or filters.amount_from is not None
        or filters.amount_to is not None
    ):
        return None
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
            filters.invoice_type in (None, invoice.invoice_type),
            filters.currency in (None, invoice.currency),
            filters.self_billed in (None, invoice.self_billed),
            filters.payment_overdue in (None, invoice.is_payment_overdue(today)),
            filters.amount_from is None or invoice.total_amount_cents >= filters.amount_from,
            filters.amount_to is None or invoice.total_amount_cents <= filters.amount_to,
            not term or searched(invoice),
        )
        return all(checks)

    return kept
