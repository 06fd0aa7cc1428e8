"""The sync state of each catalog object mirrored in Stripe.

``store.stripe_sync``; access patterns: the Store's (``billow.adapters.dynamodb``).

State attributes are stored as they are (no packed document): the catalog write that
asks for a sync sets a few of them in its own transaction, without reading the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import cast

from billow.adapters.listing import Repository
from billow.adapters.table import Item, Transaction, org_pk
from billow.domain.events import OutboxEvent
from billow.domain.stripe_sync import StripeSyncState, SyncedType

FAILED = "STRIPE_SYNC_FAILED"


def _key(organization_id: str, object_type: str, lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"STRIPE_SYNC#{object_type}#{lago_id}"}


def _state(item: Item) -> StripeSyncState:
    return StripeSyncState.model_validate(
        {name: item[name] for name in StripeSyncState.model_fields if name in item}
    )


class StripeSyncRecords(Repository):
    def stage_requested(
        self,
        transaction: Transaction,
        organization_id: str,
        object_type: SyncedType,
        lago_id: str,
        code: str,
        version: int,
    ) -> None:
        """Mark an object's mirror out of date, with the write that made it so (no read:
        whatever a sync recorded, the next one starts from here)."""
        transaction.update(
            _key(organization_id, object_type, lago_id),
            "SET organization_id = :org, object_type = :type, lago_id = :id, code = :code, "
            "kind = :kind, "
            "#status = :pending, requested_version = :version "
            "ADD revision :one REMOVE GSI2PK, GSI2SK",
            values={
                ":org": organization_id,
                ":type": object_type,
                ":id": lago_id,
                ":code": code,
                ":kind": "stripe_sync",
                ":pending": "pending",
                ":version": version,
                ":one": 1,
            },
            names={"#status": "status"},
        )

    def get(
        self, organization_id: str, object_type: SyncedType, lago_id: str
    ) -> StripeSyncState | None:
        key = _key(organization_id, object_type, lago_id)
        item = self._db.table.get_item(Key=key, ConsistentRead=True).get("Item")
        return _state(item) if item else None

    def get_many(
        self, organization_id: str, object_type: SyncedType, lago_ids: Iterable[str]
    ) -> dict[str, StripeSyncState]:
        """The states of several objects of one type, by id (absent ones left out)."""
        keys = [_key(organization_id, object_type, lago_id) for lago_id in dict.fromkeys(lago_ids)]
        return {str(item["lago_id"]): _state(item) for item in self._db.get_items(keys)}

    def record(self, state: StripeSyncState, events: Sequence[OutboxEvent] = ()) -> StripeSyncState:
        """Write what a sync found (and the events it causes), unless the state changed
        since it was read (an edit asked for a newer version, or another sync recorded
        first): ConcurrentUpdate."""
        written = state.model_copy(update={"revision": state.revision + 1})
        item: Item = {
            **_key(state.organization_id, state.object_type, state.lago_id),
            "kind": "stripe_sync",
            **{
                name: value
                for name, value in written.model_dump(mode="json").items()
                if value is not None
            },
        }
        if written.status == "failed":
            item["GSI2PK"] = f"{org_pk(state.organization_id)}#{FAILED}"
            item["GSI2SK"] = f"{state.object_type}#{state.lago_id}"
        transaction = Transaction()
        transaction.put(item, condition="revision = :read", values={":read": state.revision})
        transaction.publish(events)
        self._db.commit(transaction)
        return written

    def failed(self, organization_id: str) -> Iterator[tuple[SyncedType, str]]:
        """The objects whose last sync failed, as (object type, id)."""
        for item in self._db.query(
            IndexName="GSI2",
            KeyConditionExpression="GSI2PK = :pk",
            ExpressionAttributeValues={":pk": f"{org_pk(organization_id)}#{FAILED}"},
        ):
            object_type, _, lago_id = str(item["GSI2SK"]).partition("#")
            yield cast(SyncedType, object_type), lago_id
