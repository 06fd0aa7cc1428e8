"""Which subscription an external id names (Lago's GET /subscriptions/{external_id})."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.errors import NotFound
from billow.domain.subscriptions import Subscription, SubscriptionStatus
from billow.services.subscriptions.views import SubscriptionView, view_of


def live_subscription(subscriptions: list[Subscription]) -> Subscription | None:
    for status in ("active", "pending"):
        for sub in reversed(subscriptions):
            if sub.status == status:
                return sub
    return None


def find(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    status: SubscriptionStatus | None = None,
) -> Subscription:
    """The subscription an external id names: the live one, else the latest (Lago's GET)."""
    subscriptions = deps.store.subscriptions.list_for_external_id(organization_id, external_id)
    if status:
        matching = [s for s in subscriptions if s.status == status]
        if not matching:
            raise NotFound("subscription")
        return matching[-1]
    found = live_subscription(subscriptions) or (subscriptions[-1] if subscriptions else None)
    if found is None:
        raise NotFound("subscription")
    return found


def get(deps: Dependencies, organization_id: str, external_id: str) -> SubscriptionView:
    return view_of(deps, organization_id, find(deps, organization_id, external_id))
