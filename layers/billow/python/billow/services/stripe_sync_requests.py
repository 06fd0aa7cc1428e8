"""What Billow's writes ask of the Stripe sync: who bills a subscription (seed 004's
rules), and the sync requests staged with the catalog writes that need them.

A write that needs a sync marks the object's sync state ``pending`` and publishes a
``stripe.sync_requested`` command in its own transaction, so a change is never lost
between Billow and Stripe: both are stored, or neither. This module sits below the
``stripe_sync`` package (which does the syncing), so the billing core uses it too."""

from __future__ import annotations

from typing import Literal

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.customers import Customer
from billow.domain.events import OutboxEvent, internal_event
from billow.domain.integrations import StripeConnection
from billow.domain.stripe_sync import (
    CUSTOMER_NOT_IN_STRIPE,
    FREE_PLAN,
    IN_TRIAL,
    SUBSCRIPTION_SYNC_OFF,
    USAGE_CHARGES,
    USAGE_WITHIN_PERIOD,
    SyncedType,
    not_synced,
)
from billow.topology import STRIPE_SYNC_REQUESTED


def catalog_connection(deps: Dependencies, organization_id: str) -> StripeConnection | None:
    """The connection that mirrors the organization's catalog, if one does."""
    return next(
        (c for c in deps.store.connections.list_all(organization_id) if c.sync_catalog), None
    )


def sync_requested(organization_id: str, object_type: SyncedType, lago_id: str) -> OutboxEvent:
    return internal_event(
        organization_id, STRIPE_SYNC_REQUESTED, {"object_type": object_type, "lago_id": lago_id}
    )


SyncAsked = tuple[SyncedType, str, str, int]
"""An object to sync: its type, id, code and the version asked for."""
CHUNK = 90
"""Objects asked for per transaction: one state update each, plus the one outbox item
holding their commands, within DynamoDB's 100 actions."""


def request_syncs(deps: Dependencies, organization_id: str, objects: list[SyncAsked]) -> int:
    """Ask for a sync of many objects at once (turning sync on, a resync, a repriced
    plan's subscriptions), ``CHUNK`` to a transaction; returns how many."""
    for start in range(0, len(objects), CHUNK):
        chunk = objects[start : start + CHUNK]
        transaction = Transaction()
        for object_type, lago_id, code, version in chunk:
            deps.store.stripe_sync.stage_requested(
                transaction, organization_id, object_type, lago_id, code, version
            )
        transaction.publish(
            [
                sync_requested(organization_id, object_type, lago_id)
                for object_type, lago_id, _, _ in chunk
            ]
        )
        deps.store.commit(transaction)
    return len(objects)


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


Owner = tuple[Literal["billow", "stripe"], str | None]


def billing_owner(
    deps: Dependencies, customer: Customer, plan: Plan, trial_over: bool = False
) -> Owner:
    """Seed 004's rules: Stripe bills a subscription to a synced plan, unless the plan is
    free (or charges for usage Stripe's invoices can no longer take), the subscription is
    in its trial (Billow hands it over when the trial ends, ``trial_over``), or the
    customer is not in Stripe."""
    connection = catalog_connection(deps, customer.organization_id)
    if connection is None or not connection.sync_subscriptions:
        return "billow", SUBSCRIPTION_SYNC_OFF
    if plan.amount_cents == 0:
        return "billow", FREE_PLAN
    if plan.charges and connection.usage_sync_refused is not None:
        return "billow", USAGE_CHARGES
    if plan.usage_thresholds or any(charge.pay_in_advance for charge in plan.charges):
        return "billow", USAGE_WITHIN_PERIOD
    if plan.trial_period > 0 and not trial_over:
        return "billow", IN_TRIAL
    if not customer.stripe_customer_id:
        return "billow", CUSTOMER_NOT_IN_STRIPE
    return "stripe", None
