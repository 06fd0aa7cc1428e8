"""Lago applied coupons: /api/v1/applied_coupons and a customer's applied coupons."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, BeforeValidator

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.query import known
from billow.api.responses.catalog import AppliedCouponResponse, AppliedCouponsPage
from billow.services import applied_coupons as service
from billow.services.lookups import get_customer

router = Router()

StatusFilter = Annotated[service.Status | None, BeforeValidator(known(service.Status)), Query()]
"""An unknown status is ignored, as Lago ignores it."""
CouponCodes = Annotated[list[str] | None, Query(alias="coupon_code[]")]


class AppliedCouponBody(BaseModel):
    applied_coupon: service.AppliedCouponInput


@router.post("/api/v1/applied_coupons")
def apply_coupon(body: Annotated[AppliedCouponBody, Body()]) -> AppliedCouponResponse:
    pair = service.apply_coupon(deps(), organization_id(router), body.applied_coupon)
    return AppliedCouponResponse.model_validate({"applied_coupon": service.present([pair])[0]})


@router.get("/api/v1/applied_coupons")
def list_applied_coupons(
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    status: StatusFilter = None,
    external_customer_id: Annotated[str | None, Query(max_length=255)] = None,
    coupon_codes: CouponCodes = None,
) -> AppliedCouponsPage:
    shown, total = service.list_page(
        deps(), organization_id(router), external_customer_id, status, coupon_codes, page, per_page
    )
    return AppliedCouponsPage.model_validate(
        {"applied_coupons": service.present(shown), "meta": page_meta(total, page, per_page)}
    )


@router.get("/api/v1/customers/<external_customer_id>/applied_coupons")
def list_customer_applied_coupons(
    external_customer_id: str,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    status: StatusFilter = None,
    coupon_codes: CouponCodes = None,
) -> AppliedCouponsPage:
    organization = organization_id(router)
    get_customer(deps(), organization, external_customer_id)
    shown, total = service.list_page(
        deps(), organization, external_customer_id, status, coupon_codes, page, per_page
    )
    return AppliedCouponsPage.model_validate(
        {"applied_coupons": service.present(shown), "meta": page_meta(total, page, per_page)}
    )


@router.delete("/api/v1/customers/<external_customer_id>/applied_coupons/<applied_coupon_id>")
def terminate_applied_coupon(
    external_customer_id: str, applied_coupon_id: str
) -> AppliedCouponResponse:
    pair = service.terminate(
        deps(), organization_id(router), external_customer_id, applied_coupon_id
    )
    return AppliedCouponResponse.model_validate({"applied_coupon": service.present([pair])[0]})
