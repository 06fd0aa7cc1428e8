"""Lago customers: /api/v1/customers."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.services import customers, lookups

router = Router()


class CustomerCreateInput(BaseModel):
    customer: customers.CustomerInput


@router.post("/api/v1/customers")
def create_or_update_customer(body: Annotated[CustomerCreateInput, Body()]) -> dict[str, Any]:
    customer = customers.upsert_customer(deps(), organization_id(router), body.customer)
    return {"customer": customers.present(deps(), [customer])[0]}


@router.get("/api/v1/customers")
def list_customers(page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> dict[str, Any]:
    shown, total = customers.list_page(deps(), organization_id(router), page, per_page)
    return {
        "customers": customers.present(deps(), shown),
        "meta": page_meta(total, page, per_page),
    }


@router.get("/api/v1/customers/<external_customer_id>")
def get_customer(external_customer_id: str) -> dict[str, Any]:
    customer = lookups.get_customer(deps(), organization_id(router), external_customer_id)
    return {"customer": customers.present(deps(), [customer])[0]}


@router.delete("/api/v1/customers/<external_customer_id>")
def delete_customer(external_customer_id: str) -> dict[str, Any]:
    customer = customers.delete_customer(deps(), organization_id(router), external_customer_id)
    return {"customer": customers.present(deps(), [customer])[0]}


@router.post("/api/v1/customers/<external_customer_id>/checkout_url")
def generate_checkout_url(external_customer_id: str) -> dict[str, Any]:
    return {
        "customer": customers.checkout_url(deps(), organization_id(router), external_customer_id)
    }
