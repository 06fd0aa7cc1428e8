"""Stripe events received (the inbox that de-duplicates them) and where the
reconciliation's next look at an account's events starts (access patterns: the Store's,
``billow.adapters.dynamodb``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from billow.adapters.listing import Read, Repository
from billow.adapters.table import Item, Transaction, expires_in, org_pk, packed

STRIPE_EVENT_TTL_S = 90 * 24 * 3600


class StripeEventRecords(Repository):
    @staticmethod
    def stage(
        transaction: Transaction,
        organization_id: str,
        code: str,
        event: dict[str, Any],
        received_at: str,
    ) -> None:
        """Stage an incoming Stripe event; the condition makes a redelivery a no-op."""
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": f"STRIPE_EVENT#{event['id']}",
                "kind": "stripe_event",
                "status": "received",
                "connection_code": code,
                "data": packed(event),
                # GSI2 copies ids only: entering and leaving it cost a write unit each,
                # and the item stays under the 1 KB a write unit covers.
                "GSI2PK": f"{org_pk(organization_id)}#STRIPE_EVENT_PENDING",
                "GSI2SK": received_at,
                "expires_at": expires_in(STRIPE_EVENT_TTL_S),
            },
            condition="attribute_not_exists(PK)",
        )

    @staticmethod
    def ref(organization_id: str, event_id: str) -> Read[Item]:
        """The stored event as its item: its status and connection beside the event."""
        return Read(org_pk(organization_id), f"STRIPE_EVENT#{event_id}", lambda item: item)

    def get(self, organization_id: str, event_id: str) -> Item | None:
        return self._db.get(self.ref(organization_id, event_id))

    @staticmethod
    def stage_outcome(
        transaction: Transaction,
        organization_id: str,
        event_id: str,
        outcome: str,
        error: str | None = None,
    ) -> None:
        """Stage the end of processing: leaves the pending index, only once."""
        transaction.update(
            {"PK": org_pk(organization_id), "SK": f"STRIPE_EVENT#{event_id}"},
            "SET #status = :outcome, processing_error = :error REMOVE GSI2PK, GSI2SK",
            condition="#status = :received",
            values={":outcome": outcome, ":error": error, ":received": "received"},
            names={"#status": "status"},
        )

    def get_cursor(self, organization_id: str, code: str) -> int | None:
        item = self._db.get_item(org_pk(organization_id), f"STRIPE_EVENTS_CURSOR#{code}")
        return int(str(item["created"])) if item else None

    def save_cursor(self, organization_id: str, code: str, created: int) -> None:
        """Move the cursor forward only: two overlapping sweeps never set it back."""
        try:
            self._db.table.put_item(
                Item={
                    "PK": org_pk(organization_id),
                    "SK": f"STRIPE_EVENTS_CURSOR#{code}",
                    "kind": "stripe_events_cursor",
                    "created": created,
                },
                ConditionExpression="attribute_not_exists(PK) OR created <= :created",
                ExpressionAttributeValues={":created": created},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def list_pending(self, organization_id: str, received_before: str) -> Iterator[Item]:
        yield from self._db.query(
            IndexName="GSI2",
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :below",
            ExpressionAttributeValues={
                ":pk": f"{org_pk(organization_id)}#STRIPE_EVENT_PENDING",
                ":below": received_before,
            },
        )
