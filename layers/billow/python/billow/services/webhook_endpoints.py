"""Where an organization wants its webhooks (Lago's webhook_endpoints)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.webhooks import MAX_ENDPOINTS_PER_ORGANIZATION, WebhookEndpoint


class WebhookEndpointInput(BaseModel):
    """Lago's WebhookEndpointCreateInput.webhook_endpoint. Billow signs with HMAC only."""

    model_config = ConfigDict(strict=True, extra="ignore")

    webhook_url: Annotated[HttpUrl, Field(max_length=2048)]
    signature_algo: Literal["hmac"] | None = None
    name: Annotated[str, Field(max_length=255)] | None = None
    event_types: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = None


def _check_unique_url(
    existing: list[WebhookEndpoint], url: str, except_id: str | None = None
) -> None:
    for endpoint in existing:
        if endpoint.webhook_url == url and endpoint.lago_id != except_id:
            raise ValidationFailed({"webhook_url": ["value_already_exist"]})


def create_endpoint(
    deps: Dependencies, organization_id: str, given: WebhookEndpointInput
) -> WebhookEndpoint:
    url = str(given.webhook_url)
    existing = deps.store.webhook_endpoints.list_all(organization_id)
    if len(existing) >= MAX_ENDPOINTS_PER_ORGANIZATION:
        raise ValidationFailed({"base": ["exceeded_limit"]})
    _check_unique_url(existing, url)
    endpoint = WebhookEndpoint(
        lago_id=new_id(),
        organization_id=organization_id,
        webhook_url=url,
        name=given.name,
        event_types=given.event_types,
        created_at=iso(utcnow()),
        created_ns=time.time_ns(),
    )
    deps.store.webhook_endpoints.save(endpoint)
    return endpoint


def get_endpoint(deps: Dependencies, organization_id: str, lago_id: str) -> WebhookEndpoint:
    endpoint = deps.store.webhook_endpoints.get(organization_id, lago_id)
    if endpoint is None:
        raise NotFound("webhook_endpoint")
    return endpoint


def update_endpoint(
    deps: Dependencies, organization_id: str, lago_id: str, given: WebhookEndpointInput
) -> WebhookEndpoint:
    endpoint = get_endpoint(deps, organization_id, lago_id)
    url = str(given.webhook_url)
    _check_unique_url(
        deps.store.webhook_endpoints.list_all(organization_id), url, except_id=lago_id
    )
    updates: dict[str, object] = {"webhook_url": url}
    for field in ("name", "event_types"):
        if field in given.model_fields_set:
            updates[field] = getattr(given, field)
    endpoint = endpoint.model_copy(update=updates)
    deps.store.webhook_endpoints.save(endpoint)
    return endpoint


def delete_endpoint(deps: Dependencies, organization_id: str, lago_id: str) -> WebhookEndpoint:
    endpoint = get_endpoint(deps, organization_id, lago_id)
    deps.store.webhook_endpoints.delete(endpoint)
    return endpoint


def point_first_endpoint_at(
    deps: Dependencies, organization_id: str, url: HttpUrl
) -> WebhookEndpoint:
    """Lago's organization ``webhook_url``: the first (oldest) endpoint takes the URL, or
    one is created when there is none, with the checks every endpoint gets."""
    given = WebhookEndpointInput(webhook_url=url)
    existing = deps.store.webhook_endpoints.list_all(organization_id)
    if not existing:
        return create_endpoint(deps, organization_id, given)
    return update_endpoint(deps, organization_id, existing[0].lago_id, given)
