"""Asking for a sync, in the transaction of the catalog write that needs it.

The write marks the object's sync state ``pending`` and publishes a
``stripe.sync_requested`` command with it, so a write is never lost between Billow and
Stripe: either both the change and the request are stored, or neither."""

from __future__ import annotations

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.events import OutboxEvent, internal_event
from billow.domain.integrations import StripeConnection
from billow.domain.stripe_sync import SyncedType, not_synced
from billow.topology import STRIPE_SYNC_REQUESTED


def catalog_connection(deps: Dependencies, organization_id: str) -> StripeConnection | None:
    """The connection that mirrors the organization's catalog, if one does."""
    return next((c for c in deps.store.list_connections(organization_id) if c.sync_catalog), None)


def sync_requested(organization_id: str, object_type: SyncedType, lago_id: str) -> OutboxEvent:
    return internal_event(
        organization_id, STRIPE_SYNC_REQUESTED, {"object_type": object_type, "lago_id": lago_id}
    )


def stage_sync(
    deps: Dependencies,
    transaction: Transaction,
    organization_id: str,
    object_type: SyncedType,
    lago_id: str,
    code: str,
    version: int,
) -> None:
    """Ask for the object's sync with the write staged in ``transaction``, when the
    organization mirrors its catalog (otherwise nothing is staged)."""
    if catalog_connection(deps, organization_id) is None:
        return
    deps.store.stripe_sync.stage_requested(
        transaction, organization_id, object_type, lago_id, code, version
    )
    transaction.publish([sync_requested(organization_id, object_type, lago_id)])


def sync_views(
    deps: Dependencies, organization_id: str, object_type: SyncedType, lago_ids: list[str]
) -> dict[str, dict[str, object]]:
    """``stripe_sync`` of each object, as served (one BatchGetItem for a page)."""
    states = deps.store.stripe_sync.get_many(organization_id, object_type, lago_ids)
    return {
        lago_id: states[lago_id].as_lago() if lago_id in states else not_synced()
        for lago_id in lago_ids
    }
