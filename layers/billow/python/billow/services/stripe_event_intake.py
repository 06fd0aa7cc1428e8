"""Stripe events' intake: verify, de-duplicate and store what Stripe delivers.

The intake only stores: the event and the command to process it are written in one
transaction, keyed by Stripe's event id, so a redelivered event changes nothing. A
``payment_intent.succeeded`` that only confirms what the invoice already records (the
charge's own answer settled it) is acknowledged without being stored. Events reach the
intake two ways, through the same door (``ingest``): Stripe's webhook deliveries, and
the hourly reconciliation (``billow.services.stripe_events``), which asks Stripe for the
events it created since the last look. Processing them is the stripe_events consumer's
(``billow.services.stripe_events``); the webhook's function loads none of it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar

from billow.adapters.listing import Read
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, stable_id
from billow.domain.errors import ConcurrentUpdate
from billow.domain.events import OutboxEvent, internal_event
from billow.domain.integrations import STRIPE_WEBHOOK_EVENTS
from billow.domain.invoices import Invoice
from billow.domain.stripe_signature import SignatureError, verify
from billow.topology import STRIPE_EVENT_RECEIVED

MIRRORED_STRIPE_INVOICE_EVENTS = frozenset(
    {"invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed"}
)
"""Stripe's events about the invoices Stripe Billing issues for synced subscriptions,
which Billow mirrors as its own invoices (``billow.services.stripe_sync.invoices``)."""
UNHANDLED_TYPES = frozenset({"charge.refund.updated", "charge.dispute.closed"})
HANDLED_TYPES = frozenset(STRIPE_WEBHOOK_EVENTS) - UNHANDLED_TYPES
"""The events Billow's endpoint receives that it acts on: all but refunds' and disputes',
which it is subscribed to and acknowledges without storing."""
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
    connection, invoice = read_with_named_invoice(
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

    ``named_invoice``: the invoice the event names, as ``read_with_named_invoice`` read
    it just now (None when it names none, or none exists)."""
    if event["type"] not in HANDLED_TYPES:
        return "ignored"
    if _confirms_recorded_payment(event, named_invoice):
        return "known"
    transaction = Transaction()
    deps.store.stripe_events.stage(transaction, organization_id, code, event, iso(now))
    transaction.publish([process_command(organization_id, event["id"], code)])
    try:
        deps.store.commit(transaction)
    except ConcurrentUpdate:
        return "duplicate"
    return "stored"


def read_with_named_invoice(
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


def process_command(
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
