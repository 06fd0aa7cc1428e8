"""Stripe events: intake (verify, de-duplicate, persist), processing, and recovery.

The intake only stores: the event and the command to process it are written in one
transaction, keyed by Stripe's event id, so a redelivered event changes nothing. A
``payment_intent.succeeded`` that only confirms what the invoice already records (the
charge's own answer settled it) is acknowledged without being stored. Events
reach the intake two ways, through the same door (``ingest``): Stripe's webhook
deliveries, and the hourly reconciliation, which asks Stripe for the events it created
since the last look and so recovers deliveries Stripe never made or Billow lost. The
processing is idempotent: every change it makes derives its ids and idempotency keys
from Stripe's ids or from Billow's state as read before the change, and the event is
marked processed in the same transaction as its last change.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from billow.adapters.listing import Read
from billow.adapters.table import Item, Transaction, document
from billow.composition import Dependencies
from billow.domain.clock import iso, parse_iso, stable_id
from billow.domain.errors import ConcurrentUpdate, ProviderError
from billow.domain.events import OutboxEvent, internal_event
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Invoice
from billow.domain.payments import Applied
from billow.domain.stripe_signature import SignatureError, verify
from billow.ports import PaymentProvider
from billow.services.payment_methods import (
    stage_provider_method_removal,
    stage_saved_card,
    stage_stripe_default,
)
from billow.services.payments.settlement import UnmatchedPayment, settle_from_stripe
from billow.services.provider_sync import adopt_stripe_address
from billow.services.stripe_sync.invoices import MIRRORED, mirror_invoice
from billow.services.stripe_sync.usage import add_usage_to_renewal
from billow.services.subscriptions.canceled_in_stripe import end_from_stripe
from billow.services.subscriptions.checkout import complete_checkout, expire_checkout
from billow.topology import STRIPE_EVENT_RECEIVED

HANDLED_TYPES = frozenset(
    {
        "setup_intent.succeeded",
        "checkout.session.completed",
        "checkout.session.expired",
        "payment_method.detached",
        "customer.updated",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "customer.subscription.deleted",
        *MIRRORED,
    }
)
STALE_AFTER = timedelta(minutes=15)
CURSOR_OVERLAP = timedelta(minutes=5)
T = TypeVar("T")


class RejectedDelivery(Exception):
    """The request is not a genuine, well-formed Stripe event for this organization."""


def _parse(raw_body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RejectedDelivery("body is not JSON") from error
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"].startswith("evt_")
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise RejectedDelivery("not a Stripe event")
    return event


Intake = Literal["stored", "duplicate", "known", "ignored"]
"""What became of a delivery: kept for processing, already kept (Stripe delivers at least
once), a fact Billow already recorded from Stripe's own answer (``known``), or of a type
Billow does not handle."""
Processed = Applied | Literal["rejected", "failed", "skipped"]
"""What processing a stored event came to, as recorded on it: besides applied or ignored,
``rejected`` (a payment Billow will not apply, reported), ``failed`` (a refusal Stripe
will repeat) or ``skipped`` (processed already, by another delivery)."""


def receive(
    deps: Dependencies,
    organization_id: str,
    code: str,
    raw_body: bytes,
    signature: str | None,
    now: datetime,
) -> Intake:
    """Verify and store one delivery; returns what became of it (``Intake``).

    The connection (for its webhook secret) and the invoice the event names are read in
    one request before the signature is checked: reading changes nothing, and nothing is
    done with what the body says until it is verified."""
    event = _parse(raw_body)
    connection, invoice = _read_with_named_invoice(
        deps, organization_id, deps.store.connections.ref(organization_id, code), event
    )
    if connection is None:
        raise RejectedDelivery("no Stripe connection")
    secret = deps.secrets.get(connection.secret_name, connection.secret_version)
    try:
        verify(raw_body, signature, secret.webhook_secret, int(now.timestamp()))
    except SignatureError as error:
        raise RejectedDelivery(str(error)) from error
    return ingest(deps, organization_id, code, event, now, invoice)


def ingest(
    deps: Dependencies,
    organization_id: str,
    code: str,
    event: dict[str, Any],
    now: datetime,
    named_invoice: Invoice | None,
) -> Intake:
    """Store one authentic event once; returns what became of it (``Intake``).

    ``named_invoice``: the invoice the event names, as ``_read_with_named_invoice`` read
    it just now (None when it names none, or none exists)."""
    if event["type"] not in HANDLED_TYPES:
        return "ignored"
    if _confirms_recorded_payment(event, named_invoice):
        return "known"
    transaction = Transaction()
    deps.store.stripe_events.stage(transaction, organization_id, code, event, iso(now))
    transaction.publish([_process_command(organization_id, event["id"], code)])
    try:
        deps.store.commit(transaction)
    except ConcurrentUpdate:
        return "duplicate"
    return "stored"


def _read_with_named_invoice(
    deps: Dependencies, organization_id: str, first: Read[T], event: dict[str, Any]
) -> tuple[T | None, Invoice | None]:
    """``first``, and the invoice a ``payment_intent.succeeded`` names (Billow puts its
    id in the PaymentIntent's metadata) if it names one, in one request: that invoice's
    record may make storing the event needless (``_confirms_recorded_payment``)."""
    invoice_id = _named_invoice_id(event)
    if invoice_id is None:
        return deps.store.get(first), None
    return deps.store.read(first, deps.store.invoices.ref(organization_id, invoice_id))


def _named_invoice_id(event: dict[str, Any]) -> str | None:
    """The ``lago_invoice_id`` of a ``payment_intent.succeeded``'s metadata. The intake
    reads it before the signature is checked, so only text a key can hold is taken (JSON
    can spell a lone surrogate, which no request can carry)."""
    if event["type"] != "payment_intent.succeeded":
        return None
    metadata = event["data"]["object"].get("metadata")
    invoice_id = metadata.get("lago_invoice_id") if isinstance(metadata, dict) else None
    if not isinstance(invoice_id, str) or not invoice_id:
        return None
    try:
        invoice_id.encode()
    except UnicodeEncodeError:
        return None
    return invoice_id


def _confirms_recorded_payment(event: dict[str, Any], invoice: Invoice | None) -> bool:
    """Whether the event only confirms a payment the invoice it names already records.

    Most charges succeed while the payments consumer waits for Stripe's answer, which
    settles the invoice there and then; the ``payment_intent.succeeded`` event that
    follows would be stored, queued, processed and found to change nothing. The read of
    the invoice, made with the connection's, spares those writes. Only an exact match is
    skipped: the same PaymentIntent, recorded as having paid the invoice; anything else
    (another PaymentIntent, an invoice not yet settled) is stored and processed as before."""
    return (
        event["type"] == "payment_intent.succeeded"
        and invoice is not None
        and invoice.payment_status == "succeeded"
        and invoice.provider_payment_id is not None
        and invoice.provider_payment_id == event["data"]["object"].get("id")
    )


def _process_command(
    organization_id: str,
    stripe_event_id: str,
    connection_code: str | None,
    attempt: str = "first",
) -> OutboxEvent:
    payload: dict[str, object] = {"stripe_event_id": stripe_event_id}
    if connection_code is not None:
        payload["connection_code"] = connection_code
    return internal_event(
        organization_id,
        STRIPE_EVENT_RECEIVED,
        payload,
        event_id=stable_id("stripe-event", organization_id, stripe_event_id, attempt),
    )


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
    if kind in MIRRORED:
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
        _process_command(
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
        stored, invoice = _read_with_named_invoice(
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
