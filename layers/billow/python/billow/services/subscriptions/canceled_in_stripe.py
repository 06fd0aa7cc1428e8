"""A subscription canceled in Stripe (``customer.subscription.deleted``) ends in Billow.

Stripe invoiced it, so Billow issues no termination invoice; the organization hears
``subscription.terminated`` as for any other end. A cancellation Billow asked for
itself comes back here too and finds nothing live left to end."""

from __future__ import annotations

from typing import Any

from billow.composition import Dependencies
from billow.domain.clock import utcnow
from billow.domain.payments import Applied
from billow.services.subscriptions.terminate import terminate_subscription


def end_from_stripe(
    deps: Dependencies, organization_id: str, stripe_subscription: dict[str, Any]
) -> Applied:
    external_id = (stripe_subscription.get("metadata") or {}).get("billow_external_id")
    if not isinstance(external_id, str):
        return "ignored"  # not one Billow made
    for sub in deps.store.subscriptions.list_for_external_id(organization_id, external_id):
        if sub.is_live and sub.stripe_subscription_id == stripe_subscription.get("id"):
            terminate_subscription(
                deps,
                organization_id,
                external_id,
                status=sub.status,
                generate_invoice=False,
                now=utcnow(),
            )
            return "processed"
    return "ignored"
