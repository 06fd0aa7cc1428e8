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

    When an endpoint fails, every outcome of this attempt is recorded, so the retry of the
    message goes only to the endpoints that failed (and the retry records its own). When
    all succeed at the first attempt nothing is written: nothing will come back for them.
    Delivery is at least once, as Lago's: a function stopped between two sends sends the
    first again, and receivers de-duplicate with ``X-Lago-Unique-Key`` (the event id).
    """
    hmac_key = _hmac_key(deps, event.organization_id)
    if hmac_key is None:
        return []
    endpoints = [
        endpoint
        for endpoint in deps.store.webhook_endpoints.list_all(event.organization_id)
        if endpoint.wants(event.event_type)
    ]
    recorded = deps.store.deliveries.list_outcomes(event.organization_id, event.event_id)
    body = json.dumps(event.payload, separators=(",", ":")).encode()
    headers = delivery_headers(body, hmac_key, event.event_id)
    outcomes = {
        endpoint.lago_id: send(endpoint.webhook_url, body, headers)
        for endpoint in endpoints
        if recorded.get(endpoint.lago_id) != "succeeded"
    }
    failed = [endpoint_id for endpoint_id, outcome in outcomes.items() if not outcome.ok]
    if failed or recorded:
        for endpoint_id, outcome in outcomes.items():
            deps.store.deliveries.record(
                event.organization_id,
                event.event_id,
                endpoint_id,
                "succeeded" if outcome.ok else "failed",
                outcome.detail,
            )
    return failed
