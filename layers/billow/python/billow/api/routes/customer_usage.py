"""A customer's usage in a subscription's billing periods: /api/v1/customers/<id>/current_usage
and /past_usage. Apart from the customers' other routes because they need the billing
engine (charge models, invoicing, taxes), which reading or writing a customer does not."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.usage import CustomerUsageResponse, PastUsageResponse
from billow.domain.clock import utcnow
from billow.services.usage import current_usage

router = Router()


@router.get("/api/v1/customers/<external_customer_id>/current_usage")
def get_current_usage(
    external_customer_id: str, external_subscription_id: str, apply_taxes: bool = True
) -> CustomerUsageResponse:
    usage = current_usage.current_usage(
        deps(),
        organization_id(router),
        external_customer_id,
        external_subscription_id,
        utcnow(),
        apply_taxes,
    )
    return CustomerUsageResponse.model_validate({"customer_usage": usage})


@router.get("/api/v1/customers/<external_customer_id>/past_usage")
def get_past_usage(
    external_customer_id: str,
    external_subscription_id: str,
    periods_count: Annotated[int, Query(ge=1, le=current_usage.PAST_PERIODS_MAX)] = 1,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> PastUsageResponse:
    periods = current_usage.past_usage(
        deps(),
        organization_id(router),
        external_customer_id,
        external_subscription_id,
        utcnow(),
        periods_count,
    )
    shown = periods[(page - 1) * per_page : page * per_page]
    return PastUsageResponse.model_validate(
        {"usage_periods": shown, "meta": page_meta(len(periods), page, per_page)}
    )
