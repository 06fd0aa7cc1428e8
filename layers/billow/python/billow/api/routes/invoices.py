"""Lago invoices: /api/v1/invoices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, paginate
from billow.domain.clock import utcnow
from billow.services import invoices as service
from billow.services import payments

router = Router()


@router.post("/api/v1/invoices")
def create_one_off_invoice(body: Annotated[service.OneOffInvoiceBody, Body()]) -> dict[str, Any]:
    return {
        "invoice": service.create_one_off(deps(), organization_id(router), body.invoice, utcnow())
    }


def _listed(
    external_customer_id: str | None,
    status: str | None,
    payment_status: str | None,
    page: int,
    per_page: int,
) -> dict[str, Any]:
    found = service.list_invoices(
        deps(),
        organization_id(router),
        external_customer_id=external_customer_id,
        status=status,
        payment_status=payment_status,
    )
    shown, meta = paginate(found, page, per_page)
    return {"invoices": service.present_all(deps(), shown), "meta": meta}


@router.get("/api/v1/invoices")
def list_invoices(
    external_customer_id: str | None = None,
    status: Literal["draft", "finalized", "voided", "failed", "pending"] | None = None,
    payment_status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> dict[str, Any]:
    return _listed(external_customer_id, status, payment_status, page, per_page)


@router.get("/api/v1/customers/<external_customer_id>/invoices")
def list_customer_invoices(
    external_customer_id: str,
    status: Literal["draft", "finalized", "voided", "failed", "pending"] | None = None,
    payment_status: Literal["pending", "succeeded", "failed"] | None = None,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> dict[str, Any]:
    return _listed(external_customer_id, status, payment_status, page, per_page)


@router.get("/api/v1/invoices/<lago_id>")
def get_invoice(lago_id: str) -> dict[str, Any]:
    return {"invoice": service.get(deps(), organization_id(router), lago_id)}


@router.post("/api/v1/invoices/<lago_id>/void")
def void_invoice(lago_id: str) -> dict[str, Any]:
    invoice = payments.void(deps(), organization_id(router), lago_id)
    return {"invoice": service.present(deps(), invoice)}


@router.post("/api/v1/invoices/<lago_id>/retry_payment")
def retry_payment(lago_id: str) -> dict[str, Any]:
    invoice = payments.request_attempt(deps(), organization_id(router), lago_id)
    return {"invoice": service.present(deps(), invoice)}


@router.post("/api/v1/invoices/<lago_id>/payment_url")
def payment_url(lago_id: str) -> dict[str, Any]:
    return {
        "invoice_payment_details": payments.payment_url(deps(), organization_id(router), lago_id)
    }
