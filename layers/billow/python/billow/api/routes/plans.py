"""Lago plans: /api/v1/plans."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.catalog import ChargeResponse, ChargesPage, PlanResponse, PlansPage
from billow.domain.usage import Charge
from billow.services import plan_charge_routes as charge_routes
from billow.services import plans as service
from billow.services.plan_charges import ChargeChanges, ChargeInput

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


# -- one charge at a time ---------------------------------------------------------------


class ChargeCreateBody(BaseModel):
    charge: ChargeInput


class ChargeUpdateBody(BaseModel):
    charge: ChargeChanges


def _shown(charges: list[Charge]) -> list[dict[str, object]]:
    """Lago's ChargeObject of each, with its taxes (read once for all)."""
    codes = {code for charge in charges for code in charge.tax_codes}
    taxes = {tax.code: tax for tax in deps().store.taxes.get_many(organization_id(router), codes)}
    return [
        charge.as_lago([taxes[code] for code in charge.tax_codes if code in taxes])
        for charge in charges
    ]


def _charge_body(charge: Charge) -> ChargeResponse:
    return ChargeResponse.model_validate({"charge": _shown([charge])[0]})


@router.get("/api/v1/plans/<code>/charges")
def list_charges(code: str, page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> ChargesPage:
    charges = charge_routes.list_charges(deps(), organization_id(router), code)
    shown = charges[(page - 1) * per_page : page * per_page]
    return ChargesPage.model_validate(
        {
            "charges": _shown(shown),
            "meta": page_meta(len(charges), page, per_page),
        }
    )


@router.post("/api/v1/plans/<code>/charges")
def create_charge(code: str, body: Annotated[ChargeCreateBody, Body()]) -> ChargeResponse:
    return _charge_body(
        charge_routes.create_charge(deps(), organization_id(router), code, body.charge)
    )


@router.get("/api/v1/plans/<code>/charges/<charge_code>")
def get_charge(code: str, charge_code: str) -> ChargeResponse:
    return _charge_body(
        charge_routes.get_charge(deps(), organization_id(router), code, charge_code)
    )


@router.put("/api/v1/plans/<code>/charges/<charge_code>")
def update_charge(
    code: str, charge_code: str, body: Annotated[ChargeUpdateBody, Body()]
) -> ChargeResponse:
    changes = body.charge.model_dump(exclude_unset=True)
    return _charge_body(
        charge_routes.update_charge(deps(), organization_id(router), code, charge_code, changes)
    )


@router.delete("/api/v1/plans/<code>/charges/<charge_code>")
def delete_charge(code: str, charge_code: str) -> ChargeResponse:
    return _charge_body(
        charge_routes.delete_charge(deps(), organization_id(router), code, charge_code)
    )
