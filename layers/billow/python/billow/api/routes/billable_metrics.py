"""Lago billable metrics: /api/v1/billable_metrics."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, page_meta
from billow.api.responses.usage import BillableMetricResponse, BillableMetricsPage
from billow.domain.usage import BillableMetric
from billow.services import billable_metrics as service

router = Router()


class BillableMetricCreateBody(BaseModel):
    billable_metric: service.BillableMetricCreateInput


class BillableMetricUpdateBody(BaseModel):
    billable_metric: service.BillableMetricInput


def _response(metric: BillableMetric) -> BillableMetricResponse:
    return BillableMetricResponse.model_validate({"billable_metric": metric.as_lago()})


@router.post("/api/v1/billable_metrics")
def create_billable_metric(
    body: Annotated[BillableMetricCreateBody, Body()],
) -> BillableMetricResponse:
    return _response(service.create_metric(deps(), organization_id(router), body.billable_metric))


@router.get("/api/v1/billable_metrics")
def list_billable_metrics(
    page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE
) -> BillableMetricsPage:
    shown, total = service.list_page(deps(), organization_id(router), page, per_page)
    return BillableMetricsPage.model_validate(
        {
            "billable_metrics": [metric.as_lago() for metric in shown],
            "meta": page_meta(total, page, per_page),
        }
    )


@router.get("/api/v1/billable_metrics/<code>")
def get_billable_metric(code: str) -> BillableMetricResponse:
    return _response(service.get_metric(deps(), organization_id(router), code))


@router.put("/api/v1/billable_metrics/<code>")
def update_billable_metric(
    code: str, body: Annotated[BillableMetricUpdateBody, Body()]
) -> BillableMetricResponse:
    return _response(
        service.update_metric(deps(), organization_id(router), code, body.billable_metric)
    )


@router.delete("/api/v1/billable_metrics/<code>")
def delete_billable_metric(code: str) -> BillableMetricResponse:
    return _response(service.delete_metric(deps(), organization_id(router), code))
