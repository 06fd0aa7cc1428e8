"""Turning catalog sync on: every plan, add-on and coupon that exists is asked for.

Runs behind the stripe-sync queue (``stripe.catalog_sync_started``), not in the request
that turned sync on: an organization with thousands of objects gets its answer at once,
and each object then syncs on its own message with its own status."""

from __future__ import annotations

from collections.abc import Iterator

from billow.composition import Dependencies
from billow.domain.clock import iso, utcnow
from billow.services.stripe_sync_requests import SyncAsked, catalog_connection, request_syncs


def _live_catalog(deps: Dependencies, organization_id: str) -> Iterator[SyncAsked]:
    now = iso(utcnow())
    for plan in deps.store.plans.list_with_deleted(organization_id):
        if plan.deleted_at is None:
            yield "plan", plan.lago_id, plan.code, plan.version
    for add_on in deps.store.add_ons.list_all(organization_id):
        yield "add_on", add_on.lago_id, add_on.code, add_on.version
    for coupon in deps.store.coupons.list_with_deleted(organization_id):
        if coupon.deleted_at is None and coupon.ended_at(now) is None:
            yield "coupon", coupon.lago_id, coupon.code, coupon.version


def request_whole_catalog(deps: Dependencies, organization_id: str) -> int:
    """Ask for a sync of every live catalog object; returns how many. Asking twice is
    harmless: each sync reads the object and its state, and does what is missing."""
    if catalog_connection(deps, organization_id) is None:
        return 0
    return request_syncs(deps, organization_id, list(_live_catalog(deps, organization_id)))
