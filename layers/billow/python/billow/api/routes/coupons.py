"""Lago coupons: /api/v1/coupons."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.catalog import CouponResponse, CouponsPage
from billow.services import coupons as service

router = Router()


class CouponCreateBody(BaseModel):
    coupon: service.CouponCreateInput


class CouponUpdateBody(BaseModel):
    coupon: service.CouponInput


@router.post("/api/v1/coupons")
def create_coupon(body: Annotated[CouponCreateBody, Body()]) -> CouponResponse:
    organization = organization_id(router)
    coupon = service.create_coupon(deps(), organization, body.coupon)
    return CouponResponse.model_validate(
        {"coupon": service.present(deps(), organization, [coupon])[0]}
    )


@router.get("/api/v1/coupons")
def list_coupons(page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE) -> CouponsPage:
    organization = organization_id(router)
    shown, total = service.list_page(deps(), organization, page, per_page)
    meta = page_meta(total, page, per_page)
    return CouponsPage.model_validate(
        {"coupons": service.present(deps(), organization, shown), "meta": meta}
    )


@router.get("/api/v1/coupons/<code>")
def get_coupon(code: str) -> CouponResponse:
    organization = organization_id(router)
    coupon = service.get_coupon(deps(), organization, code)
    return CouponResponse.model_validate(
        {"coupon": service.present(deps(), organization, [coupon])[0]}
    )


@router.put("/api/v1/coupons/<code>")
def update_coupon(code: str, body: Annotated[CouponUpdateBody, Body()]) -> CouponResponse:
    organization = organization_id(router)
    coupon = service.update_coupon(deps(), organization, code, body.coupon)
    return CouponResponse.model_validate(
        {"coupon": service.present(deps(), organization, [coupon])[0]}
    )


@router.delete("/api/v1/coupons/<code>")
def delete_coupon(code: str) -> CouponResponse:
    organization = organization_id(router)
    coupon = service.delete_coupon(deps(), organization, code)
    return CouponResponse.model_validate(
        {"coupon": service.present(deps(), organization, [coupon])[0]}
    )
