"""Lago invoices: /api/v1/invoices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BeforeValidator

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, paginate
from billow.api.query import Cents, Day, Flag, known
from billow.domain.clock import utcnow
from billow.services import invoices as service
from billow.services import payments
from billow.services.lookups import get_customer

router = Router()

Status = Literal["draft", "finalized", "voided", "failed", "pending"]
PaymentStatus = Literal["pending", "succeeded", "failed"]
InvoiceType = Literal[
    "subscription", "add_on", "credit", "one_off", "advance_charges", "progressive_billing"
]
# Lago reads ``status=`` (its older form) and ``statuses[]=`` (its OpenAPI's), and the same
# for payment statuses; unknown values are ignored.
StatusFilter = Annotated[Status | None, BeforeValidator(known(Status)), Query()]
StatusesFilter = Annotated[
    list[Status] | None, BeforeValidator(known(Status, many=True)), Query(alias="statuses[]")
]
PaymentStatusFilter = Annotated[
    PaymentStatus | None, BeforeValidator(known(PaymentStatus)), Query()
]
PaymentStatusesFilter = Annotated[
    list[PaymentStatus] | None,
    BeforeValidator(known(PaymentStatus, many=True)),
    Query(alias="payment_statuses[]"),
]
InvoiceTypeFilter = Annotated[InvoiceType | None, BeforeValidator(known(InvoiceType)), Query()]
BillingEntityCodes = Annotated[list[str] | None, Query(alias="billing_entity_codes[]")]


@router.post("/api/v1/invoices")
def create_one_off_invoice(body: Annotated[service.OneOffInvoiceBody, Body()]) -> dict[str, Any]:
    return {
        "invoice": service.create_one_off(deps(), organization_id(router), body.invoice, utcnow())
    }


def _listed(filters: service.InvoiceFilters, page: int, per_page: int) -> dict[str, Any]:
    today = utcnow().date()
    found = service.list_invoices(deps(), organization_id(router), filters, today)
    shown, meta = paginate(found, page, per_page)
    return {"invoices": service.present_all(deps(), shown, today), "meta": meta}


@router.get("/api/v1/invoices")
def list_invoices(
    external_customer_id: str | None = None,
    status: StatusFilter = None,
    statuses: StatusesFilter = None,
    payment_status: PaymentStatusFilter = None,
    payment_statuses: PaymentStatusesFilter = None,
    invoice_type: InvoiceTypeFilter = None,
    issuing_date_from: Day = None,
    issuing_date_to: Day = None,
    payment_overdue: Flag = None,
    currency: str | None = None,
    amount_from: Cents = None,
    amount_to: Cents = None,
    self_billed: Flag = None,
    billing_entity_codes: BillingEntityCodes = None,
    search_term: str | None = None,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> dict[str, Any]:
    filters = service.InvoiceFilters(
        external_customer_id=external_customer_id,
        statuses=[status] if status else statuses,
        payment_statuses=[payment_status] if payment_status else payment_statuses,
        invoice_type=invoice_type,
        issuing_date_from=issuing_date_from,
        issuing_date_to=issuing_date_to,
        payment_overdue=payment_overdue,
        currency=currency,
        amount_from=amount_from,
        amount_to=amount_to,
        self_billed=self_billed,
        billing_entity_codes=billing_entity_codes,
        search_term=search_term,
    )
    return _listed(filters, page, per_page)


@router.get("/api/v1/customers/<external_customer_id>/invoices")
def list_customer_invoices(
    external_customer_id: str,
    status: StatusFilter = None,
    statuses: StatusesFilter = None,
    payment_status: PaymentStatusFilter = None,
    payment_statuses: PaymentStatusesFilter = None,
    invoice_type: InvoiceTypeFilter = None,
    issuing_date_from: Day = None,
    issuing_date_to: Day = None,
    payment_overdue: Flag = None,
    currency: str | None = None,
    amount_from: Cents = None,
    amount_to: Cents = None,
    self_billed: Flag = None,
    billing_entity_codes: BillingEntityCodes = None,
    search_term: str | None = None,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> dict[str, Any]:
    """Unlike ``/invoices?external_customer_id=``, an unknown customer here is a 404."""
    get_customer(deps(), organization_id(router), external_customer_id)
    return list_invoices(
        external_customer_id,
        status,
        statuses,
        payment_status,
        payment_statuses,
        invoice_type,
        issuing_date_from,
        issuing_date_to,
        payment_overdue,
        currency,
        amount_from,
        amount_to,
        self_billed,
        billing_entity_codes,
        search_term,
        page,
        per_page,
    )


@router.get("/api/v1/invoices/<lago_id>")
def get_invoice(lago_id: str) -> dict[str, Any]:
    return {"invoice": service.get(deps(), organization_id(router), lago_id, utcnow().date())}


@router.post("/api/v1/invoices/<lago_id>/void")
def void_invoice(lago_id: str) -> dict[str, Any]:
    invoice = payments.void(deps(), organization_id(router), lago_id)
    return {"invoice": service.present(deps(), invoice, utcnow().date())}


@router.post("/api/v1/invoices/<lago_id>/retry_payment")
def retry_payment(lago_id: str) -> dict[str, Any]:
    invoice = payments.request_attempt(deps(), organization_id(router), lago_id)
    return {"invoice": service.present(deps(), invoice, utcnow().date())}


@router.post("/api/v1/invoices/<lago_id>/payment_url")
def payment_url(lago_id: str) -> dict[str, Any]:
    return {
        "invoice_payment_details": payments.payment_url(deps(), organization_id(router), lago_id)
    }
