"""Events Billow records in its outbox, next to the state change that causes them."""

from __future__ import annotations

from pydantic import BaseModel

from billow.domain.clock import iso, new_id, utcnow
from billow.domain.webhooks import envelope


class OutboxEvent(BaseModel):
    """One fact to publish on the bus. ``webhook`` events are Lago webhooks sent outward;
    the others are internal commands for Billow's own consumers."""

    event_id: str
    organization_id: str
    event_type: str
    webhook: bool
    occurred_at: str
    payload: dict[str, object]


def webhook_event(
    organization_id: str, webhook_type: str, object_type: str, obj: dict[str, object]
) -> OutboxEvent:
    return OutboxEvent(
        event_id=new_id(),
        organization_id=organization_id,
        event_type=webhook_type,
        webhook=True,
        occurred_at=iso(utcnow()),
        payload=envelope(webhook_type, object_type, organization_id, obj),
    )


def internal_event(
    organization_id: str, event_type: str, payload: dict[str, object], event_id: str | None = None
) -> OutboxEvent:
    return OutboxEvent(
        event_id=event_id or new_id(),
        organization_id=organization_id,
        event_type=event_type,
        webhook=False,
        occurred_at=iso(utcnow()),
        payload=payload,
    )
