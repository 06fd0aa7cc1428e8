"""``POST /api/v1/integrations/stripe/{code}/resync``: ask again for every object whose
sync failed (after fixing what Stripe refused, say a currency the account cannot use)."""

from __future__ import annotations

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.errors import NotFound, ValidationFailed
from billow.services.stripe_sync_requests import sync_requested

CHUNK = 90


def resync_failed(deps: Dependencies, organization_id: str, code: str) -> int:
    """Re-queue the failed objects; returns how many. Each is marked ``pending`` again
    with its request, so a sync that fails again is announced again."""
    connection = deps.store.get_connection(organization_id, code)
    if connection is None:
        raise NotFound("integration")
    if not connection.sync_catalog:
        raise ValidationFailed({"sync_catalog": ["sync_not_enabled"]})
    failed = list(deps.store.stripe_sync.failed(organization_id))
    for start in range(0, len(failed), CHUNK):
        chunk = failed[start : start + CHUNK]
        states = {
            (state.object_type, state.lago_id): state
            for object_type in {object_type for object_type, _ in chunk}
            for state in deps.store.stripe_sync.get_many(
                organization_id, object_type, [i for t, i in chunk if t == object_type]
            ).values()
        }
        transaction = Transaction()
        for key in chunk:
            state = states.get(key)
            if state is None:
                continue
            deps.store.stripe_sync.stage_requested(
                transaction,
                organization_id,
                state.object_type,
                state.lago_id,
                state.code,
                state.requested_version,
            )
        transaction.publish([sync_requested(organization_id, t, i) for t, i in chunk])
        deps.store.commit(transaction)
    return len(failed)
