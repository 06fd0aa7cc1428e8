"""Turning catalog sync on: every plan, add-on and coupon that exists is asked for.

Runs behind the stripe-sync queue (``stripe.catalog_sync_started``), not in the request
that turned sync on: an organization with thousands of objects gets its answer at once,
and each object then syncs on its own message with its own status."""

from __future__ import annotations

from collections.abc import Iterator

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, utcnow
from billow.domain.stripe_sync import SyncedType
from billow.services.stripe_sync_requests import catalog_connection, sync_requested

CHUNK = 90
"""Objects asked for per transaction: one state update each, plus the one outbox item
holding their commands, within DynamoDB's 100 actions."""


def _live_catalog(
    deps: Dependencies, organization_id: str
) -> Iterator[tuple[SyncedType, str, str, int]]:
    now = iso(utcnow())
    for plan in deps.store.all_plans(organization_id):
        if plan.deleted_at is None:
            yield "plan", plan.lago_id, plan.code, plan.version
    for add_on in deps.store.list_add_ons(organization_id):
        yield "add_on", add_on.lago_id, add_on.code, add_on.version
    for coupon in deps.store.all_coupons(organization_id):
        if coupon.deleted_at is None and coupon.ended_at(now) is None:
            yield "coupon", coupon.lago_id, coupon.code, coupon.version


def request_whole_catalog(deps: Dependencies, organization_id: str) -> int:
    """Ask for a sync of every live catalog object; returns how many. Asking twice is
    harmless: each sync reads the object and its state, and does what is missing."""
    if catalog_connection(deps, organization_id) is None:
        return 0
    objects = list(_live_catalog(deps, organization_id))
    for start in range(0, len(objects), CHUNK):
        transaction = Transaction()
        for object_type, lago_id, code, version in objects[start : start + CHUNK]:
            deps.store.stripe_sync.stage_requested(
                transaction, organization_id, object_type, lago_id, code, version
            )
        transaction.publish(
            [
                sync_requested(organization_id, object_type, lago_id)
                for object_type, lago_id, _, _ in objects[start : start + CHUNK]
            ]
        )
        deps.store.commit(transaction)
    return len(objects)
