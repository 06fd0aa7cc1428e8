"""Delivering one Lago webhook event to every endpoint of its organization that wants it."""

from __future__ import annotations

import json
from collections.abc import Callable

from billow.adapters.http_sender import Delivery
from billow.adapters.webhook_records import StoredEndpoints
from billow.composition import Dependencies
from billow.domain.events import OutboxEvent
from billow.domain.webhooks import delivery_headers

Sender = Callable[[str, bytes, dict[str, str]], Delivery]


_HMAC_KEYS: dict[str, str] = {}
"""Each organization's HMAC key, read once per process: it is made with the organization
and never changes, so every delivery after the first reads one item less."""


def _read(
    deps: Dependencies, event: OutboxEvent
) -> tuple[str, StoredEndpoints | None, frozenset[str]] | None:
    """The organization's HMAC key, its endpoints and those the event already reached, in
    one strongly consistent request (so an endpoint created a moment ago is served);
    None when the organization does not exist."""
    store, organization_id = deps.store, event.organization_id
    endpoints = store.webhook_endpoints.ref(organization_id)
    served = store.deliveries.ref(organization_id, event.event_id)
    hmac_key = _HMAC_KEYS.get(organization_id)
    if hmac_key is None:
        stored, reached, organization = store.read(
            endpoints, served, store.organizations.ref(organization_id)
        )
        if organization is None:
            return None
        hmac_key = _HMAC_KEYS[organization_id] = organization.hmac_key
    else:
        stored, reached = store.read(endpoints, served)
    return hmac_key, stored, reached or frozenset()


def deliver(deps: Dependencies, event: OutboxEvent, send: Sender) -> list[str]:
    """Send to each endpoint not yet served; returns the endpoints that failed this time.

    Endpoints that succeeded are remembered, so a retry of the same message only goes to
    the ones that failed; receivers de-duplicate with ``X-Lago-Unique-Key`` (the event id).
    """
    read = _read(deps, event)
    if read is None:
        return []
    hmac_key, stored, reached = read
    if stored is None:
        stored = deps.store.webhook_endpoints.gather(event.organization_id)
    body = json.dumps(event.payload, separators=(",", ":")).encode()
    headers = delivery_headers(body, hmac_key, event.event_id)
    failed: list[str] = []
    for endpoint in stored.endpoints:
        if not endpoint.wants(event.event_type) or endpoint.lago_id in reached:
            continue
        outcome = send(endpoint.webhook_url, body, headers)
        deps.store.deliveries.record(
            event.organization_id, event.event_id, endpoint.lago_id, outcome.ok, outcome.detail
        )
        if not outcome.ok:
            failed.append(endpoint.lago_id)
    return failed
