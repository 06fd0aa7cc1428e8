"""Usage on Stripe's invoices (seed 004): a Stripe-billed subscription's usage is added
to Stripe's renewal while it is a draft.

When Stripe makes a subscription's renewal (``invoice.created``, ``billing_reason:
subscription_cycle``) it keeps it a draft for the account's finalization grace period.
Billow then adds the usage of the period that just ended: one invoice item per charge
fee Billow's own invoice would have had (per filter, and a minimum spend's true-up), a
line of the charge's own Product, its units in the description and Billow's amount,
each with an idempotency key of the invoice and the fee, so a repeated event adds
nothing. Stripe charges them with the renewal.

Stigg needs at least an hour of grace to do this in time, which is Stripe's default. A
draft that Stripe will finalize sooner shows the account was set otherwise: Billow still
adds the usage it can, and the connection refuses usage sync from then on (new
subscriptions to plans with charges stay billed by Billow, ``usage_sync_refused``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, utcnow
from billow.domain.errors import ConcurrentUpdate
from billow.domain.integrations import StripeConnection
from billow.services.lookups import billing_context
from billow.services.stripe_sync.invoices import owner_of
from billow.services.subscription_billing import INSTANT, period_at, timezone_of
from billow.services.usage.fees import usage_fees, usage_start

MIN_GRACE = timedelta(hours=1)
GRACE_TOO_SHORT = "finalization_grace_period_too_short"

Outcome = Literal["usage_added", "no_usage", "ignored"]


def add_usage_to_renewal(
    deps: Dependencies, connection: StripeConnection, stripe_invoice: dict[str, Any]
) -> Outcome:
    if stripe_invoice.get("status") != "draft":
        return "ignored"
    if stripe_invoice.get("billing_reason") != "subscription_cycle":
        return "ignored"  # a first invoice, or a proration of a change: no period ended
    organization_id = connection.organization_id
    sub = owner_of(deps, organization_id, stripe_invoice)
    context = billing_context(deps, organization_id, sub)
    if sub is None or context is None or not context[0].charges:
        return "ignored"
    plan, organization, customer = context
    created = datetime.fromtimestamp(int(stripe_invoice["created"]), UTC)
    _refuse_if_short_grace(deps, connection, stripe_invoice, created)
    # The Billow period that ended last: Stripe renews at Billow's boundary (calendar
    # billing, anchored there) or later that day (anniversary billing, at the hour the
    # subscription started, where Billow's periods start at midnight).
    timezone = timezone_of(organization, customer)
    current = period_at(sub, plan, created, timezone)
    period = period_at(sub, plan, current.start - INSTANT, timezone)
    drafts, writes = usage_fees(
        deps, sub, plan, (period.start, period.end), (usage_start(sub, period.start), period.end)
    )
    state = deps.store.stripe_sync.get(organization_id, "plan", plan.lago_id)
    products = state.charge_products if state else {}
    added = 0
    for draft in drafts:
        product = products.get(draft.charge_id or "")
        if draft.amount_cents <= 0 or product is None:
            continue
        shown = draft.item.filter_invoice_display_name
        deps.stripe_for(connection).add_invoice_item(
            customer_id=str(stripe_invoice["customer"]),
            invoice_id=str(stripe_invoice["id"]),
            product_id=product,
            amount=draft.amount_cents,
            currency=plan.amount_currency.lower(),
            description=draft.description
            or f"{draft.units} {draft.item.name}" + (f" ({shown})" if shown else ""),
            metadata={
                "billow_subscription_id": sub.lago_id,
                "billow_charge_id": draft.charge_id or "",
                "billow_units": draft.units,
            },
            idempotency_key=f"billow-usage-{stripe_invoice['id']}-{draft.key}",
        )
        added += 1
    # What the period carries into the next (recurring metrics) moves once, as with
    # Billow's own invoices; a repeated event finds it moved already.
    transaction = Transaction()
    writes(transaction)
    if transaction.actions:
        with contextlib.suppress(ConcurrentUpdate):
            deps.store.commit(transaction)
    return "usage_added" if added else "no_usage"


def _refuse_if_short_grace(
    deps: Dependencies,
    connection: StripeConnection,
    stripe_invoice: dict[str, Any],
    created: datetime,
) -> None:
    finalizes = stripe_invoice.get("automatically_finalizes_at")
    if finalizes is None or connection.usage_sync_refused is not None:
        return
    if datetime.fromtimestamp(int(finalizes), UTC) - created < MIN_GRACE:
        # Read again: the connection may have been edited since this event was taken up.
        current = deps.store.connections.get(connection.organization_id, connection.code)
        if current is not None and current.usage_sync_refused is None:
            deps.store.connections.save(
                current.model_copy(
                    update={"usage_sync_refused": GRACE_TOO_SHORT, "updated_at": iso(utcnow())}
                ),
                previous=current,
            )
