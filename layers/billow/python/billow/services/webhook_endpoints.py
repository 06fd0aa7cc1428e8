"""Where an organization wants its webhooks (Lago's webhook_endpoints)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from billow.adapters.webhook_records import StoredEndpoints
from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.webhooks import MAX_ENDPOINTS_PER_ORGANIZATION, WebhookEndpoint
from billow.services.retries import retry_on_race

WEBHOOK_TYPE = r"^[a-z0-9_.]{1,100}$"
"""The letters of Lago's webhook types (``invoice.payment_status_updated``)."""


class WebhookEndpointInput(BaseModel):
    """Lago's WebhookEndpointCreateInput.webhook_endpoint. Billow signs with HMAC only."""

    model_config = ConfigDict(strict=True, extra="ignore")

    webhook_url: Annotated[HttpUrl, Field(max_length=2048)]
    signature_algo: Literal["hmac"] | None = None
    name: Annotated[str, Field(max_length=255)] | None = None
    event_types: (
        Annotated[list[Annotated[str, Field(pattern=WEBHOOK_TYPE)]], Field(max_length=100)] | None
    ) = None
    """At most a hundred of Lago's webhook types (it has fewer), ASCII: all of an
    organization's endpoints are kept in one item, which DynamoDB caps at 400 KB."""


def _check_unique_url(
    existing: Sequence[WebhookEndpoint], url: str, except_id: str | None = None
) -> None:
    for endpoint in existing:
        if endpoint.webhook_url == url and endpoint.lago_id != except_id:
            raise ValidationFailed({"webhook_url": ["value_already_exist"]})


def create_endpoint(
    deps: Dependencies, organization_id: str, given: WebhookEndpointInput
) -> WebhookEndpoint:
    """Add an endpoint. The limit and the unique URL hold whatever requests race: each
    change is written on the condition that the endpoints are still as read."""
    url = str(given.webhook_url)

    def create() -> WebhookEndpoint:
        stored = deps.store.webhook_endpoints.load(organization_id)
        if len(stored.endpoints) >= MAX_ENDPOINTS_PER_ORGANIZATION:
            raise ValidationFailed({"base": ["exceeded_limit"]})
        _check_unique_url(stored.endpoints, url)
        endpoint = WebhookEndpoint(
            lago_id=new_id(),
            organization_id=organization_id,
            webhook_url=url,
            name=given.name,
            event_types=given.event_types,
            created_at=iso(utcnow()),
            created_ns=time.time_ns(),
        )
        deps.store.webhook_endpoints.save(stored, [*stored.endpoints, endpoint])
        return endpoint

    return retry_on_race(create)


def _found(stored: StoredEndpoints, lago_id: str) -> WebhookEndpoint:
    endpoint = stored.find(lago_id)
    if endpoint is None:
        raise NotFound("webhook_endpoint")
    return endpoint


def get_endpoint(deps: Dependencies, organization_id: str, lago_id: str) -> WebhookEndpoint:
    return _found(deps.store.webhook_endpoints.load(organization_id), lago_id)


def update_endpoint(
    deps: Dependencies, organization_id: str, lago_id: str, given: WebhookEndpointInput
) -> WebhookEndpoint:
    url = str(given.webhook_url)
    updates: dict[str, object] = {"webhook_url": url}
    for field in ("name", "event_types"):
        if field in given.model_fields_set:
            updates[field] = getattr(given, field)

    def update() -> WebhookEndpoint:
        stored = deps.store.webhook_endpoints.load(organization_id)
        endpoint = _found(stored, lago_id)
        _check_unique_url(stored.endpoints, url, except_id=lago_id)
        updated = endpoint.model_copy(update=updates)
        deps.store.webhook_endpoints.save(
            stored, [updated if e.lago_id == lago_id else e for e in stored.endpoints]
        )
        return updated

    return retry_on_race(update)


def delete_endpoint(deps: Dependencies, organization_id: str, lago_id: str) -> WebhookEndpoint:
    def delete() -> WebhookEndpoint:
        stored = deps.store.webhook_endpoints.load(organization_id)
        endpoint = _found(stored, lago_id)
        deps.store.webhook_endpoints.save(
            stored, [e for e in stored.endpoints if e.lago_id != lago_id]
        )
        return endpoint

    return retry_on_race(delete)


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
