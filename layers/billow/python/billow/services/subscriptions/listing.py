"""Lago's GET /subscriptions (and a customer's subscriptions)."""

from __future__ import annotations

from billow.adapters.billing_records import SubscriptionSelection
from billow.composition import Dependencies
from billow.domain.subscriptions import Subscription


def list_subscriptions(
    deps: Dependencies,
    organization_id: str,
    *,
    external_customer_id: str | None,
    plan_code: str | None,
    statuses: list[str],
    page: int,
    per_page: int,
) -> tuple[list[Subscription], int]:
    """Page ``page`` of the subscriptions in ``statuses`` (Lago's default: active), newest
    first, and how many there are; reads the list keys before the page and the page's
    subscriptions only. The caller builds views for them (see :func:`views`)."""
    selection = SubscriptionSelection(
        statuses=sorted(set(statuses or ["active"])),
        customer=external_customer_id,
        plan=plan_code,
    )
    skip = (page - 1) * per_page
    found = deps.store.subscriptions.list_page(organization_id, selection, skip, per_page)
    return found, deps.store.subscriptions.count(organization_id, selection)
