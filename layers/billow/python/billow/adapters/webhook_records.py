"""Webhook endpoints and what was delivered to them (access patterns: the Store's,
``billow.adapters.dynamodb``)."""

from __future__ import annotations

from billow.adapters.listing import Repository
from billow.adapters.table import Item, document, expires_in, org_pk, packed
from billow.domain.webhooks import WebhookEndpoint

DELIVERY_TTL_S = 30 * 24 * 3600


def _endpoint_key(organization_id: str, lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"WEBHOOK_ENDPOINT#{lago_id}"}


class WebhookEndpointRecords(Repository):
    def save(self, endpoint: WebhookEndpoint) -> None:
        self._db.table.put_item(
            Item={
                **_endpoint_key(endpoint.organization_id, endpoint.lago_id),
                "kind": "webhook_endpoint",
                "data": packed(endpoint),
            }
        )

    def get(self, organization_id: str, lago_id: str) -> WebhookEndpoint | None:
        key = _endpoint_key(organization_id, lago_id)
        item = self._db.get_item(key["PK"], key["SK"])
        return WebhookEndpoint.model_validate(document(item)) if item else None

    def list_all(self, organization_id: str) -> list[WebhookEndpoint]:
        endpoints = [
            WebhookEndpoint.model_validate(document(item))
            for item in self._db.query_prefix(org_pk(organization_id), "WEBHOOK_ENDPOINT#")
        ]
        return sorted(endpoints, key=lambda endpoint: (endpoint.created_at, endpoint.created_ns))

    def delete(self, endpoint: WebhookEndpoint) -> None:
        self._db.table.delete_item(Key=_endpoint_key(endpoint.organization_id, endpoint.lago_id))


class DeliveryRecords(Repository):
    """Each endpoint's outcome for each outgoing event (kept 30 days)."""

    def list_delivered_endpoints(self, organization_id: str, event_id: str) -> set[str]:
        return {
            str(item["endpoint_id"])
            for item in self._db.query_prefix(
                org_pk(organization_id), f"WEBHOOK_DELIVERY#{event_id}#"
            )
            if item.get("status") == "succeeded"
        }

    def record(
        self, organization_id: str, event_id: str, endpoint_id: str, status: str, detail: str
    ) -> None:
        """Remember each endpoint's outcome so a retried message skips endpoints already served."""
        self._db.table.update_item(
            Key={"PK": org_pk(organization_id), "SK": f"WEBHOOK_DELIVERY#{event_id}#{endpoint_id}"},
            UpdateExpression=(
                "SET #status = :status, endpoint_id = :endpoint, detail = :detail, "
                "kind = :kind, expires_at = :expires ADD attempts :one"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":status": status,
                ":endpoint": endpoint_id,
                ":detail": detail[:1000],
                ":kind": "webhook_delivery",
                ":expires": expires_in(DELIVERY_TTL_S),
                ":one": 1,
            },
        )
