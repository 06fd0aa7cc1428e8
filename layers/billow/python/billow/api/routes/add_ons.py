"""Lago add-ons: /api/v1/add_ons."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.catalog import AddOnResponse, AddOnsPage
from billow.services import add_ons as service

router = Router()


class AddOnCreateBody(BaseModel):
    add_on: service.AddOnCreateInput


class AddOnUpdateBody(BaseModel):
    add_on: service.AddOnInput


@router.post("/api/v1/add_ons")
def create_add_on(body: Annotated[AddOnCreateBody, Body()]) -> AddOnResponse:
    organization = organization_id(router)
    add_on = service.create_add_on(deps(), organization, body.add_on)
    return AddOnResponse.model_validate(
        {"add_on": service.present(deps(), organization, [add_on])[0]}
    )


@router.get("/api/v1/add_ons")
def list_add_ons(page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> AddOnsPage:
    organization = organization_id(router)
    shown, total = service.list_page(deps(), organization, page, per_page)
    meta = page_meta(total, page, per_page)
    return AddOnsPage.model_validate(
        {"add_ons": service.present(deps(), organization, shown), "meta": meta}
    )


@router.get("/api/v1/add_ons/<code>")
def get_add_on(code: str) -> AddOnResponse:
    organization = organization_id(router)
    add_on = service.get_add_on(deps(), organization, code)
    return AddOnResponse.model_validate(
        {"add_on": service.present(deps(), organization, [add_on])[0]}
    )


@router.put("/api/v1/add_ons/<code>")
def update_add_on(code: str, body: Annotated[AddOnUpdateBody, Body()]) -> AddOnResponse:
    organization = organization_id(router)
    add_on = service.update_add_on(deps(), organization, code, body.add_on)
    return AddOnResponse.model_validate(
        {"add_on": service.present(deps(), organization, [add_on])[0]}
    )


@router.delete("/api/v1/add_ons/<code>")
def delete_add_on(code: str) -> AddOnResponse:
    organization = organization_id(router)
    add_on = service.delete_add_on(deps(), organization, code)
    return AddOnResponse.model_validate(
        {"add_on": service.present(deps(), organization, [add_on])[0]}
    )
