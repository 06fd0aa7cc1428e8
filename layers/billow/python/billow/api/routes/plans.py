"""Lago plans: /api/v1/plans."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.catalog import PlanResponse, PlansPage
from billow.services import plans as service

router = Router()


class PlanCreateBody(BaseModel):
    plan: service.PlanCreateInput


class PlanUpdateBody(BaseModel):
    plan: service.PlanInput


@router.post("/api/v1/plans")
def create_plan(body: Annotated[PlanCreateBody, Body()]) -> PlanResponse:
    organization = organization_id(router)
    plan = service.create_plan(deps(), organization, body.plan)
    return PlanResponse.model_validate({"plan": service.present(deps(), organization, [plan])[0]})


@router.get("/api/v1/plans")
def list_plans(page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> PlansPage:
    organization = organization_id(router)
    shown, total = service.list_page(deps(), organization, page, per_page)
    meta = page_meta(total, page, per_page)
    return PlansPage.model_validate(
        {"plans": service.present(deps(), organization, shown), "meta": meta}
    )


@router.get("/api/v1/plans/<code>")
def get_plan(code: str) -> PlanResponse:
    organization = organization_id(router)
    plan = service.get_plan(deps(), organization, code)
    return PlanResponse.model_validate({"plan": service.present(deps(), organization, [plan])[0]})


@router.put("/api/v1/plans/<code>")
def update_plan(code: str, body: Annotated[PlanUpdateBody, Body()]) -> PlanResponse:
    organization = organization_id(router)
    plan = service.update_plan(deps(), organization, code, body.plan)
    return PlanResponse.model_validate({"plan": service.present(deps(), organization, [plan])[0]})


@router.delete("/api/v1/plans/<code>")
def delete_plan(code: str) -> PlanResponse:
    organization = organization_id(router)
    plan = service.delete_plan(deps(), organization, code)
    return PlanResponse.model_validate({"plan": service.present(deps(), organization, [plan])[0]})
