"""Webhook endpoints and what was delivered to them (access patterns: the Store's,
``billow.adapters.dynamodb``).

Every outgoing event needs the organization's endpoints and what the event's earlier
tries already delivered. Both are one item each, keyed by what the delivery knows (the
organization, the event), so it reads them in one BatchGetItem: the endpoints item
holds every endpoint (ten at most), and the event's deliveries item holds each
endpoint's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from billow.adapters.listing import Read, Repository
from billow.adapters.table import Item, Transaction, document, expires_in, org_pk, packed
from billow.domain.errors import ConcurrentUpdate
from billow.domain.webhooks import WebhookEndpoint

DELIVERY_TTL_S = 30 * 24 * 3600
ENDPOINTS_SK = "WEBHOOK_ENDPOINTS"
ONE_ITEM_PER_ENDPOINT = "WEBHOOK_ENDPOINT#"
"""How endpoints were stored before they were kept together: one item each, which only
a Query finds. An organization made then has them copied to the endpoints item on first
use; the old items stay as they were, so code from before can still be rolled back to."""
SUCCEEDED = "succeeded"


class _EndpointsDocument(BaseModel):
    endpoints: list[WebhookEndpoint]


@dataclass(frozen=True)
class StoredEndpoints:
    """An organization's webhook endpoints, oldest first, and the version of their item
    that a change must still find in place (so two changes never lose one another)."""

    organization_id: str
    endpoints: tuple[WebhookEndpoint, ...]
    version: int

    def find(self, lago_id: str) -> WebhookEndpoint | None:
        return next((e for e in self.endpoints if e.lago_id == lago_id), None)


def _endpoints_key(organization_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": ENDPOINTS_SK}


def _endpoints_item(
    organization_id: str, endpoints: Sequence[WebhookEndpoint], version: int
) -> Item:
    return {
        **_endpoints_key(organization_id),
        "kind": "webhook_endpoints",
        "version": version,
        "data": packed(_EndpointsDocument(endpoints=list(endpoints))),
    }


class WebhookEndpointRecords(Repository):
    """The organization's endpoints, all in one item (``PK={org} SK=WEBHOOK_ENDPOINTS``)."""

    @staticmethod
    def ref(organization_id: str) -> Read[StoredEndpoints]:
        """The endpoints item; absent for an organization whose endpoints were never
        stored there (``load`` makes it)."""

        def parse(item: Item) -> StoredEndpoints:
            stored = _EndpointsDocument.model_validate(document(item))
            return StoredEndpoints(
                organization_id, tuple(stored.endpoints), int(str(item["version"]))
            )

        key = _endpoints_key(organization_id)
        return Read(key["PK"], key["SK"], parse)

    def load(self, organization_id: str) -> StoredEndpoints:
        return self._db.get(self.ref(organization_id)) or self.gather(organization_id)

    def gather(self, organization_id: str) -> StoredEndpoints:
        """Make the endpoints item of an organization that has none: empty for a new
        organization, or holding the endpoints it kept one item each (left in place and
        never read again: a rollback to the code before finds them). Two first uses may
        race: the loser reads what the winner wrote."""
        pk = org_pk(organization_id)
        items = list(
            self._db.query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
                ExpressionAttributeValues={":pk": pk, ":prefix": ONE_ITEM_PER_ENDPOINT},
                ConsistentRead=True,
            )
        )
        endpoints = sorted(
            (WebhookEndpoint.model_validate(document(item)) for item in items),
            key=lambda endpoint: (endpoint.created_at, endpoint.created_ns),
        )
        transaction = Transaction()
        transaction.put(
            _endpoints_item(organization_id, endpoints, 1), condition="attribute_not_exists(PK)"
        )
        try:
            self._db.commit(transaction)
        except ConcurrentUpdate:
            again = self._db.get(self.ref(organization_id))
            if again is None:
                raise
            return again
        return StoredEndpoints(organization_id, tuple(endpoints), 1)

    def save(self, stored: StoredEndpoints, endpoints: Sequence[WebhookEndpoint]) -> None:
        """Replace the endpoints with ``endpoints``; ConcurrentUpdate if they changed since
        ``stored`` was read."""
        transaction = Transaction()
        transaction.put(
            _endpoints_item(stored.organization_id, endpoints, stored.version + 1),
            condition="version = :expected",
            values={":expected": stored.version},
        )
        self._db.commit(transaction)

    def list_all(self, organization_id: str) -> list[WebhookEndpoint]:
        return list(self.load(organization_id).endpoints)


class DeliveryRecords(Repository):
    """Each endpoint's outcome for each outgoing event, one item per event (kept 30
    days): ``status#{endpoint}``, ``detail#{endpoint}`` and ``attempts#{endpoint}``.

    Outcomes were once one item per endpoint (``WEBHOOK_DELIVERY#{event}#{endpoint}``),
    which expire within 30 days; a message already being retried when that changed may
    reach again an endpoint it reached, which the receiver recognises by its
    ``X-Lago-Unique-Key``."""

    @staticmethod
    def ref(organization_id: str, event_id: str) -> Read[frozenset[str]]:
        """The endpoints the event has reached (the item is absent until a first try)."""

        def served(item: Item) -> frozenset[str]:
            return frozenset(
                name.removeprefix("status#")
                for name, status in item.items()
                if name.startswith("status#") and status == SUCCEEDED
            )

        return Read(org_pk(organization_id), f"WEBHOOK_DELIVERY#{event_id}", served)

    def record(
        self, organization_id: str, event_id: str, endpoint_id: str, succeeded: bool, detail: str
    ) -> None:
        """Remember each endpoint's outcome so a retried message skips endpoints already served."""
        self._db.table.update_item(
            Key={"PK": org_pk(organization_id), "SK": f"WEBHOOK_DELIVERY#{event_id}"},
            UpdateExpression=(
                "SET #status = :status, #detail = :detail, kind = :kind, expires_at = :expires "
                "ADD #attempts :one"
            ),
            ExpressionAttributeNames={
                "#status": f"status#{endpoint_id}",
                "#detail": f"detail#{endpoint_id}",
                "#attempts": f"attempts#{endpoint_id}",
            },
            ExpressionAttributeValues={
                ":status": SUCCEEDED if succeeded else "failed",
                ":detail": detail[:1000],
                ":kind": "webhook_delivery",
                ":expires": expires_in(DELIVERY_TTL_S),
                ":one": 1,
            },
        )
