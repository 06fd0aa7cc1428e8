"""``POST /api/v1/integrations/stripe/{code}/resync``: ask again for every object whose
sync failed (after fixing what Stripe refused, say a currency the account cannot use)."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.errors import NotFound, ValidationFailed
from billow.services.stripe_sync_requests import SyncAsked, request_syncs


def resync_failed(deps: Dependencies, organization_id: str, code: str) -> int:
    """Re-queue the failed objects; returns how many. Each is marked ``pending`` again
    with its request, so a sync that fails again is announced again."""
    connection = deps.store.connections.get(organization_id, code)
    if connection is None:
        raise NotFound("integration")
    if not connection.sync_catalog:
        raise ValidationFailed({"sync_catalog": ["sync_not_enabled"]})
    failed = list(deps.store.stripe_sync.failed(organization_id))
    asked: list[SyncAsked] = []
    for object_type in sorted({object_type for object_type, _ in failed}):
        states = deps.store.stripe_sync.get_many(
            organization_id, object_type, [i for t, i in failed if t == object_type]
        )
        asked += [
            (state.object_type, state.lago_id, state.code, state.requested_version)
            for state in states.values()
        ]
    return request_syncs(deps, organization_id, asked)
