"""Lago's GET /subscriptions (and a customer's subscriptions)."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.subscriptions import Subscription


def list_subscriptions(
    deps: Dependencies,
    organization_id: str,
    *,
    external_customer_id: str | None,
    plan_code: str | None,
    statuses: list[str],
) -> list[Subscription]:
    """Newest first; the caller builds views for the page it shows (see :func:`views`)."""
    wanted = set(statuses or ["active"])
    found = [
        sub
        for sub in deps.store.list_subscriptions(organization_id)
        if sub.status in wanted
        and (external_customer_id is None or sub.external_customer_id == external_customer_id)
        and (plan_code is None or sub.plan_code == plan_code)
    ]
    found.sort(key=lambda sub: (sub.created_at, sub.lago_id), reverse=True)
    return found
