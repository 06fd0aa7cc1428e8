"""Delivering one Lago webhook event to every endpoint of its organization that wants it."""

from __future__ import annotations

import json
from collections.abc import Callable

from billow.adapters.http_sender import Delivery
from billow.composition import Dependencies
from billow.domain.events import OutboxEvent
from billow.domain.webhooks import delivery_headers

Sender = Callable[[str, bytes, dict[str, str]], Delivery]


_HMAC_KEYS: dict[str, str] = {}
"""Each organization's HMAC key, read once per process: it is made with the organization
and never changes, so every delivery after the first saves a read."""


def _hmac_key(deps: Dependencies, organization_id: str) -> str | None:
    if organization_id not in _HMAC_KEYS:
        organization = deps.store.organizations.get(organization_id)
        if organization is None:
            return None
        _HMAC_KEYS[organization_id] = organization.hmac_key
    return _HMAC_KEYS[organization_id]


def deliver(deps: Dependencies, event: OutboxEvent, send: Sender) -> list[str]:
    """Send to each endpoint not yet served; returns the endpoints that failed this time.

    Endpoints that succeeded are remembered, so a retry of the same message only goes to
    the ones that failed; receivers de-duplicate with ``X-Lago-Unique-Key`` (the event id).
    """
    hmac_key = _hmac_key(deps, event.organization_id)
    if hmac_key is None:
        return []
    endpoints = [
        endpoint
        for endpoint in deps.store.webhook_endpoints.list_all(event.organization_id)
        if endpoint.wants(event.event_type)
    ]
    done = deps.store.deliveries.list_delivered_endpoints(event.organization_id, event.event_id)
    body = json.dumps(event.payload, separators=(",", ":")).encode()
    headers = delivery_headers(body, hmac_key, event.event_id)
    failed: list[str] = []
    for endpoint in endpoints:
        if endpoint.lago_id in done:
            continue
        outcome = send(endpoint.webhook_url, body, headers)
        status = "succeeded" if outcome.ok else "failed"
        deps.store.deliveries.record(
            event.organization_id, event.event_id, endpoint.lago_id, status, outcome.detail
        )
        if not outcome.ok:
            failed.append(endpoint.lago_id)
    return failed
