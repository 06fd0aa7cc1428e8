"""Lago customers: /api/v1/customers (their usage is ``customer_usage``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.customers import (
    CheckoutUrlResponse,
    CustomerResponse,
    CustomersPage,
    PortalUrlResponse,
)
from billow.domain.clock import utcnow
from billow.services import customer_portal, customers, lookups

router = Router()


class CustomerCreateInput(BaseModel):
    customer: customers.CustomerInput


@router.post("/api/v1/customers")
def create_or_update_customer(body: Annotated[CustomerCreateInput, Body()]) -> CustomerResponse:
    customer = customers.upsert_customer(deps(), organization_id(router), body.customer)
    return CustomerResponse.model_validate({"customer": customers.present(deps(), [customer])[0]})


@router.get("/api/v1/customers")
def list_customers(page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> CustomersPage:
    shown, total = customers.list_page(deps(), organization_id(router), page, per_page)
    return CustomersPage.model_validate(
        {"customers": customers.present(deps(), shown), "meta": page_meta(total, page, per_page)}
    )


@router.get("/api/v1/customers/<external_customer_id>")
def get_customer(external_customer_id: str) -> CustomerResponse:
    customer = lookups.get_customer(deps(), organization_id(router), external_customer_id)
    return CustomerResponse.model_validate({"customer": customers.present(deps(), [customer])[0]})


@router.delete("/api/v1/customers/<external_customer_id>")
def delete_customer(external_customer_id: str) -> CustomerResponse:
    customer = customers.delete_customer(deps(), organization_id(router), external_customer_id)
    return CustomerResponse.model_validate({"customer": customers.present(deps(), [customer])[0]})


@router.post("/api/v1/customers/<external_customer_id>/checkout_url")
def generate_checkout_url(external_customer_id: str) -> CheckoutUrlResponse:
    return CheckoutUrlResponse.model_validate(
        {"customer": customers.checkout_url(deps(), organization_id(router), external_customer_id)}
    )


@router.get("/api/v1/customers/<external_customer_id>/portal_url")
def get_portal_url(external_customer_id: str) -> PortalUrlResponse:
    url = customer_portal.portal_url(
        deps(), organization_id(router), external_customer_id, utcnow()
    )
    return PortalUrlResponse.model_validate({"customer": {"portal_url": url}})
