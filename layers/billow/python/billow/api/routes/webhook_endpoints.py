"""Lago webhook endpoints: /api/v1/webhook_endpoints."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, paginate
from billow.api.responses.integrations import WebhookEndpointResponse, WebhookEndpointsPage
from billow.services import webhook_endpoints as service

router = Router()


class WebhookEndpointInput(BaseModel):
    webhook_endpoint: service.WebhookEndpointInput


@router.post("/api/v1/webhook_endpoints")
def create_webhook_endpoint(
    body: Annotated[WebhookEndpointInput, Body()],
) -> WebhookEndpointResponse:
    endpoint = service.create_endpoint(deps(), organization_id(router), body.webhook_endpoint)
    return WebhookEndpointResponse.model_validate({"webhook_endpoint": endpoint.as_lago()})


@router.get("/api/v1/webhook_endpoints")
def list_webhook_endpoints(
    page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE
) -> WebhookEndpointsPage:
    shown, meta = paginate(
        deps().store.webhook_endpoints.list_all(organization_id(router)), page, per_page
    )
    return WebhookEndpointsPage.model_validate(
        {"webhook_endpoints": [endpoint.as_lago() for endpoint in shown], "meta": meta}
    )


@router.get("/api/v1/webhook_endpoints/<lago_id>")
def get_webhook_endpoint(lago_id: str) -> WebhookEndpointResponse:
    endpoint = service.get_endpoint(deps(), organization_id(router), lago_id)
    return WebhookEndpointResponse.model_validate({"webhook_endpoint": endpoint.as_lago()})


@router.put("/api/v1/webhook_endpoints/<lago_id>")
def update_webhook_endpoint(
    lago_id: str, body: Annotated[WebhookEndpointInput, Body()]
) -> WebhookEndpointResponse:
    endpoint = service.update_endpoint(
        deps(), organization_id(router), lago_id, body.webhook_endpoint
    )
    return WebhookEndpointResponse.model_validate({"webhook_endpoint": endpoint.as_lago()})


@router.delete("/api/v1/webhook_endpoints/<lago_id>")
def delete_webhook_endpoint(lago_id: str) -> WebhookEndpointResponse:
    endpoint = service.delete_endpoint(deps(), organization_id(router), lago_id)
    return WebhookEndpointResponse.model_validate({"webhook_endpoint": endpoint.as_lago()})
