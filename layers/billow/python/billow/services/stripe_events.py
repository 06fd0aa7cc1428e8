"""Stripe events: processing what the intake stored (``billow.services.stripe_event_intake``),
and recovery.

The hourly reconciliation asks Stripe for the events it created since the last look and
feeds those Billow never stored to the intake, so it recovers deliveries Stripe never
made or Billow lost. The processing is idempotent: every change it makes derives its ids
and idempotency keys from Stripe's ids or from Billow's state as read before the change,
and the event is marked processed in the same transaction as its last change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from billow.adapters.table import Item, Transaction, document
from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso
from billow.domain.errors import ConcurrentUpdate, ProviderError
from billow.domain.integrations import StripeConnection
from billow.domain.payments import Applied
from billow.ports import PaymentProvider
from billow.services.payment_methods import (
    stage_provider_method_removal,
    stage_saved_card,
    stage_stripe_default,
)
from billow.services.payments.settlement import UnmatchedPayment, settle_from_stripe
from billow.services.provider_sync import adopt_stripe_address
from billow.services.stripe_event_intake import (
    HANDLED_TYPES,
    MIRRORED_STRIPE_INVOICE_EVENTS,
    ingest,
    process_command,
    read_with_named_invoice,
)
from billow.services.stripe_sync.invoices import mirror_invoice
from billow.services.stripe_sync.usage import add_usage_to_renewal
from billow.services.subscriptions.canceled_in_stripe import end_from_stripe
from billow.services.subscriptions.checkout import complete_checkout, expire_checkout

STALE_AFTER = timedelta(minutes=15)
CURSOR_OVERLAP = timedelta(minutes=5)


Processed = Applied | Literal["rejected", "failed", "skipped"]
"""What processing a stored event came to, as recorded on it: besides applied or ignored,
``rejected`` (a payment Billow will not apply, reported), ``failed`` (a refusal Stripe
will repeat) or ``skipped`` (processed already, by another delivery)."""


def process(
    deps: Dependencies, organization_id: str, stripe_event_id: str, connection_code: str | None
) -> Processed:
    """Apply a stored event once; returns the outcome recorded on it. ``connection_code``:
    the connection the command says stored the event, read with the event in one request
    (the sweep's commands do not know it: the event says)."""
    item, connection = _read_stored(deps, organization_id, stripe_event_id, connection_code)
    if item is None or item["status"] != "received":
        return "skipped"
    event = document(item)
    transaction = Transaction()
    outcome: Processed = "ignored"
    error: str | None = None
    if connection is not None:
        try:
            outcome = _apply(deps, connection, event, transaction)
        except ProviderError as refused:
            if refused.retryable:
                raise  # Stripe is unavailable: the queue, then the sweep, try again
            # Stripe will refuse the same call every time: record why, never retry.
            transaction, outcome, error = Transaction(), "failed", refused.message
        except UnmatchedPayment as unmatched:
            # A PaymentIntent naming an invoice it does not pay: kept as rejected, with
            # why, and reported to the finance team in the same write.
            transaction, outcome, error = Transaction(), "rejected", unmatched.reason
            transaction.publish([unmatched.report])
    deps.store.stripe_events.stage_outcome(
        transaction, organization_id, stripe_event_id, outcome, error
    )
    try:
        deps.store.commit(transaction)
    except ConcurrentUpdate:
        again = deps.store.stripe_events.get(organization_id, stripe_event_id)
        if again is not None and again["status"] == "received":
            raise  # our staged writes lost a race: the queue retries with fresh reads
        return "skipped"  # another delivery of the same event processed it
    return outcome


def _read_stored(
    deps: Dependencies, organization_id: str, stripe_event_id: str, connection_code: str | None
) -> tuple[Item | None, StripeConnection | None]:
    """The stored event and the connection it came through."""
    event_read = deps.store.stripe_events.ref(organization_id, stripe_event_id)
    if connection_code is None:
        item, connection = deps.store.get(event_read), None
    else:
        item, connection = deps.store.read(
            event_read, deps.store.connections.ref(organization_id, connection_code)
        )
    if item is not None and item["connection_code"] != connection_code:
        connection = deps.store.connections.get(organization_id, item["connection_code"])
    return item, connection


def _apply(
    deps: Dependencies,
    connection: StripeConnection,
    event: dict[str, Any],
    transaction: Transaction,
) -> Applied:
    obj = event["data"]["object"]
    kind = event["type"]
    if kind.startswith("payment_intent."):
        return settle_from_stripe(deps, connection, obj)
    if kind == "customer.subscription.deleted":
        return end_from_stripe(deps, connection.organization_id, obj)
    if kind in MIRRORED_STRIPE_INVOICE_EVENTS:
        if kind == "invoice.created":
            add_usage_to_renewal(deps, connection, obj)
        return mirror_invoice(deps, connection, obj)
    if kind.startswith("checkout.session.") and obj.get("mode") == "subscription":
        if kind == "checkout.session.expired":
            return expire_checkout(deps, connection, obj)
        return complete_checkout(deps, connection, obj, _created(event), transaction)
    if kind == "payment_method.detached":
        method = deps.store.payment_methods.get_by_stripe_id(connection.organization_id, obj["id"])
        customer = (
            deps.store.customers.get(connection.organization_id, method.external_customer_id)
            if method
            else None
        )
        if customer is None:
            return "ignored"
        return stage_provider_method_removal(deps, transaction, customer, obj["id"])
    customer_id = obj["id"] if kind == "customer.updated" else obj.get("customer")
    customer = (
        deps.store.customers.get_by_stripe_id(connection.organization_id, customer_id)
        if isinstance(customer_id, str)
        else None
    )
    if customer is None:
        return "ignored"
    gateway = deps.stripe_for(connection)
    created = _created(event)
    if kind == "customer.updated":
        changed = (event.get("data") or {}).get("previous_attributes") or {}
        moved = (
            adopt_stripe_address(deps, gateway, customer, created)
            if "address" in changed
            else "ignored"
        )
        default = (obj.get("invoice_settings") or {}).get("default_payment_method")
        if not isinstance(default, str):
            return moved
        request = event.get("request")
        chosen = stage_stripe_default(
            deps,
            transaction,
            connection,
            gateway,
            customer,
            default,
            created,
            request.get("idempotency_key") if isinstance(request, dict) else None,
        )
        return "processed" if "processed" in (moved, chosen) else chosen
    method_id = _saved_payment_method(gateway, kind, obj)
    if method_id is None:
        return "ignored"
    return stage_saved_card(deps, transaction, connection, gateway, customer, method_id, created)


def _created(event: dict[str, Any]) -> int:
    """Stripe's own time for the fact, which orders it against Billow's changes; an event
    without one cannot claim to be newer than anything."""
    stamp = event.get("created")
    return stamp if isinstance(stamp, int) else 0


def _saved_payment_method(gateway: PaymentProvider, kind: str, obj: dict[str, Any]) -> str | None:
    """The card a setup intent or a setup-mode checkout saved."""
    if kind == "setup_intent.succeeded":
        method = obj.get("payment_method")
        return method if isinstance(method, str) else None
    if (
        kind == "checkout.session.completed"
        and obj.get("mode") == "setup"
        and obj.get("setup_intent")
    ):
        return gateway.setup_intent_payment_method(str(obj["setup_intent"]))
    return None


def republish_unprocessed(deps: Dependencies, organization_id: str, now: datetime) -> int:
    """Re-publish the organization's events still unprocessed after STALE_AFTER (a consumer
    crashed or its message reached the DLQ); processing is idempotent, so a duplicate is
    harmless."""
    commands = [
        process_command(
            organization_id, str(item["SK"]).removeprefix("STRIPE_EVENT#"), None, iso(now)
        )
        for item in deps.store.stripe_events.list_pending(organization_id, iso(now - STALE_AFTER))
    ]
    for start in range(0, len(commands), 50):
        transaction = Transaction()
        transaction.publish(commands[start : start + 50])
        deps.store.commit(transaction)
    return len(commands)


def recover_events(deps: Dependencies, connection: StripeConnection, now: datetime) -> int:
    """Ask Stripe for the events of the types Billow handles created since the last look,
    and feed each one Billow has not stored into the intake; returns how many it had not.

    The look starts CURSOR_OVERLAP before the newest event seen last time, so an event
    that became visible in Stripe's list a little late is not skipped; what was seen twice
    is recognised by its id. The first look starts when the account was connected."""
    organization_id, code = connection.organization_id, connection.code
    cursor = deps.store.stripe_events.get_cursor(organization_id, code)
    if cursor is None:
        cursor = int(parse_iso(connection.created_at).timestamp())
    newest, recovered = cursor, 0
    events = deps.stripe_for(connection).events_since(
        cursor - int(CURSOR_OVERLAP.total_seconds()), sorted(HANDLED_TYPES)
    )
    for event in events:
        newest = max(newest, int(event.get("created") or 0))
        stored, invoice = read_with_named_invoice(
            deps,
            organization_id,
            deps.store.stripe_events.ref(organization_id, str(event["id"])),
            event,
        )
        if stored is not None:
            continue
        if ingest(deps, organization_id, code, event, now, invoice) == "stored":
            recovered += 1
    deps.store.stripe_events.save_cursor(organization_id, code, newest)
    return recovered
