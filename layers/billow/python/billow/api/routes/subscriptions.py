"""Lago subscriptions: /api/v1/subscriptions."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, BeforeValidator

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.query import known
from billow.api.responses.subscriptions import SubscriptionResponse, SubscriptionsPage
from billow.domain.clock import utcnow
from billow.services import subscriptions as service

router = Router()

Status = Literal["active", "pending", "terminated", "canceled"]
StatusFilter = Annotated[
    list[Status] | None, BeforeValidator(known(Status, many=True)), Query(alias="status[]")
]
"""Unknown statuses are ignored; none left means Lago's default, active subscriptions."""


class SubscriptionUpdateBody(BaseModel):
    subscription: service.SubscriptionUpdateInput


@router.post("/api/v1/subscriptions")
def create_subscription(
    body: Annotated[service.CreateSubscription, Body()],
) -> SubscriptionResponse:
    now = utcnow()
    created = service.create(deps(), organization_id(router), body, now)
    return SubscriptionResponse.model_validate({"subscription": created.view.as_lago(now)})


def _listed(
    external_customer_id: str | None,
    plan_code: str | None,
    statuses: list[Status] | None,
    page: int,
    per_page: int,
) -> SubscriptionsPage:
    shown, total = service.list_subscriptions(
        deps(),
        organization_id(router),
        external_customer_id=external_customer_id,
        plan_code=plan_code,
        statuses=list(statuses or []),
        page=page,
        per_page=per_page,
    )
    now = utcnow()
    return SubscriptionsPage.model_validate(
        {
            "subscriptions": [
                view.as_lago(now) for view in service.views(deps(), organization_id(router), shown)
            ],
            "meta": page_meta(total, page, per_page),
        }
    )


@router.get("/api/v1/subscriptions")
def list_subscriptions(
    external_customer_id: str | None = None,
    plan_code: str | None = None,
    status: StatusFilter = None,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> SubscriptionsPage:
    return _listed(external_customer_id, plan_code, status, page, per_page)


@router.get("/api/v1/customers/<external_customer_id>/subscriptions")
def list_customer_subscriptions(
    external_customer_id: str,
    plan_code: str | None = None,
    status: StatusFilter = None,
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
) -> SubscriptionsPage:
    return _listed(external_customer_id, plan_code, status, page, per_page)


@router.get("/api/v1/subscriptions/<external_id>")
def get_subscription(external_id: str) -> SubscriptionResponse:
    view = service.get(deps(), organization_id(router), external_id)
    return SubscriptionResponse.model_validate({"subscription": view.as_lago(utcnow())})


@router.put("/api/v1/subscriptions/<external_id>")
def update_subscription(
    external_id: str, body: Annotated[SubscriptionUpdateBody, Body()]
) -> SubscriptionResponse:
    now = utcnow()
    view = service.update(deps(), organization_id(router), external_id, body.subscription, now)
    return SubscriptionResponse.model_validate({"subscription": view.as_lago(now)})


@router.delete("/api/v1/subscriptions/<external_id>")
def terminate_subscription(
    external_id: str,
    status: Literal["active", "pending"] | None = None,
    on_termination_invoice: Literal["generate", "skip"] = "generate",
    on_termination_credit_note: Literal["credit", "refund", "skip"] | None = None,
) -> SubscriptionResponse:
    now = utcnow()
    view = service.terminate_subscription(
        deps(),
        organization_id(router),
        external_id,
        status=status,
        generate_invoice=on_termination_invoice == "generate",
        now=now,
    )
    return SubscriptionResponse.model_validate({"subscription": view.as_lago(now)})
