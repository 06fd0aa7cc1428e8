"""Lago taxes: /api/v1/taxes."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.catalog import TaxesPage, TaxResponse
from billow.services import taxes as service

router = Router()


class TaxCreateBody(BaseModel):
    tax: service.TaxCreateInput


class TaxUpdateBody(BaseModel):
    tax: service.TaxInput


@router.post("/api/v1/taxes")
def create_tax(body: Annotated[TaxCreateBody, Body()]) -> TaxResponse:
    organization = organization_id(router)
    tax = service.create_tax(deps(), organization, body.tax)
    return TaxResponse.model_validate({"tax": service.present(deps(), organization, [tax])[0]})


@router.get("/api/v1/taxes")
def list_taxes(page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> TaxesPage:
    organization = organization_id(router)
    shown, total = service.list_page(deps(), organization, page, per_page)
    meta = page_meta(total, page, per_page)
    return TaxesPage.model_validate(
        {"taxes": service.present(deps(), organization, shown), "meta": meta}
    )


@router.get("/api/v1/taxes/<code>")
def get_tax(code: str) -> TaxResponse:
    organization = organization_id(router)
    tax = service.get_tax(deps(), organization, code)
    return TaxResponse.model_validate({"tax": service.present(deps(), organization, [tax])[0]})


@router.put("/api/v1/taxes/<code>")
def update_tax(code: str, body: Annotated[TaxUpdateBody, Body()]) -> TaxResponse:
    organization = organization_id(router)
    tax = service.update_tax(deps(), organization, code, body.tax)
    return TaxResponse.model_validate({"tax": service.present(deps(), organization, [tax])[0]})


@router.delete("/api/v1/taxes/<code>")
def delete_tax(code: str) -> TaxResponse:
    organization = organization_id(router)
    tax = service.delete_tax(deps(), organization, code)
    return TaxResponse.model_validate({"tax": service.present(deps(), organization, [tax])[0]})
