"""Lago invoices: /api/v1/invoices."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, BeforeValidator, Field

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.query import Cents, Day, Flag, known
from billow.api.responses.invoices import InvoiceResponse, InvoicesPage, PaymentUrlResponse
from billow.domain.clock import utcnow
from billow.services import invoices as service
from billow.services.lookups import get_customer
from billow.services.payments import attempts, payment_links, voiding

router = Router()

Status = Literal["draft", "finalized", "voided", "failed", "pending"]
PaymentStatus = Literal["pending", "succeeded", "failed"]
InvoiceType = Literal[
    "subscription", "add_on", "credit", "one_off", "advance_charges", "progressive_billing"
]


class InvoiceListQuery(BaseModel):
    """Lago's invoice list query: its filters, each ignored when unusable, and the page.

    Lago reads ``status=`` (its older form) and ``statuses[]=`` (its OpenAPI's), and the
    same for payment statuses."""

    status: Annotated[Status | None, BeforeValidator(known(Status))] = None
    statuses: Annotated[
        list[Status] | None,
        BeforeValidator(known(Status, many=True)),
        Field(alias="statuses[]"),
    ] = None
    payment_status: Annotated[PaymentStatus | None, BeforeValidator(known(PaymentStatus))] = None
    payment_statuses: Annotated[
        list[PaymentStatus] | None,
        BeforeValidator(known(PaymentStatus, many=True)),
        Field(alias="payment_statuses[]"),
    ] = None
    invoice_type: Annotated[InvoiceType | None, BeforeValidator(known(InvoiceType))] = None
    issuing_date_from: Day = None
    issuing_date_to: Day = None
    payment_overdue: Flag = None
    currency: str | None = None
    amount_from: Cents = None
    amount_to: Cents = None
    self_billed: Flag = None
    billing_entity_codes: Annotated[list[str] | None, Field(alias="billing_entity_codes[]")] = None
    search_term: str | None = None
    page: Page = 1
    per_page: PerPage = DEFAULT_PER_PAGE

    def filters(self, external_customer_id: str | None) -> service.InvoiceFilters:
        return service.InvoiceFilters(
            external_customer_id=external_customer_id,
            statuses=[self.status] if self.status else self.statuses,
            payment_statuses=(
                [self.payment_status] if self.payment_status else self.payment_statuses
            ),
            invoice_type=self.invoice_type,
            issuing_date_from=self.issuing_date_from,
            issuing_date_to=self.issuing_date_to,
            payment_overdue=self.payment_overdue,
            currency=self.currency,
            amount_from=self.amount_from,
            amount_to=self.amount_to,
            self_billed=self.self_billed,
            billing_entity_codes=self.billing_entity_codes,
            search_term=self.search_term,
        )


@router.post("/api/v1/invoices")
def create_one_off_invoice(body: Annotated[service.OneOffInvoiceBody, Body()]) -> InvoiceResponse:
    return InvoiceResponse.model_validate(
        {"invoice": service.create_one_off(deps(), organization_id(router), body.invoice, utcnow())}
    )


def _listed(query: InvoiceListQuery, external_customer_id: str | None) -> InvoicesPage:
    today = utcnow().date()
    shown, total = service.list_page(
        deps(),
        organization_id(router),
        query.filters(external_customer_id),
        today,
        query.page,
        query.per_page,
    )
    return InvoicesPage.model_validate(
        {
            "invoices": service.present_all(deps(), shown, today),
            "meta": page_meta(total, query.page, query.per_page),
        }
    )


@router.get("/api/v1/invoices")
def list_invoices(
    query: Annotated[InvoiceListQuery, Query()], external_customer_id: str | None = None
) -> InvoicesPage:
    return _listed(query, external_customer_id)


@router.get("/api/v1/customers/<external_customer_id>/invoices")
def list_customer_invoices(
    external_customer_id: str, query: Annotated[InvoiceListQuery, Query()]
) -> InvoicesPage:
    """Unlike ``/invoices?external_customer_id=``, an unknown customer here is a 404."""
    get_customer(deps(), organization_id(router), external_customer_id)
    return _listed(query, external_customer_id)


@router.get("/api/v1/invoices/<lago_id>")
def get_invoice(lago_id: str) -> InvoiceResponse:
    return InvoiceResponse.model_validate(
        {"invoice": service.get(deps(), organization_id(router), lago_id, utcnow().date())}
    )


@router.post("/api/v1/invoices/<lago_id>/void")
def void_invoice(lago_id: str) -> InvoiceResponse:
    invoice = voiding.void(deps(), organization_id(router), lago_id)
    return InvoiceResponse.model_validate(
        {"invoice": service.present(deps(), invoice, utcnow().date())}
    )


@router.post("/api/v1/invoices/<lago_id>/retry_payment")
def retry_payment(lago_id: str) -> InvoiceResponse:
    invoice = attempts.request_attempt(deps(), organization_id(router), lago_id)
    return InvoiceResponse.model_validate(
        {"invoice": service.present(deps(), invoice, utcnow().date())}
    )


@router.post("/api/v1/invoices/<lago_id>/payment_url")
def payment_url(lago_id: str) -> PaymentUrlResponse:
    return PaymentUrlResponse.model_validate(
        {
            "invoice_payment_details": payment_links.payment_url(
                deps(), organization_id(router), lago_id
            )
        }
    )
