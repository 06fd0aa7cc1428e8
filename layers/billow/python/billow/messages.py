"""The commands Billow's queues carry, one model each.

Internal commands travel as outbox events (``billow.domain.events.OutboxEvent`` with
``webhook`` false) through the bus to their queue; ``Command[ChargeRequested]`` is such an
event with its payload typed. The events that fan out to webhooks, dunning and finance
alerts carry Lago webhook bodies and are read as the recorded ``OutboxEvent``; the
invoice-work queue carries ``billow.services.billing_run.DueSubscription`` as it is.
``billow.consumers`` reads each from an SQS record.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, RootModel

PayloadT = TypeVar("PayloadT", bound=BaseModel)


class ChargeRequested(BaseModel):
    """``invoice.payment_requested``: charge this attempt of the invoice (payments)."""

    invoice_id: str
    attempt: int
    external_customer_id: str | None = None
    """The invoice's customer, so the consumer reads the invoice and the customer in one
    request. Messages sent before it was added lack it: the invoice is read first then."""
    lago_customer_id: str | None = None
    connection_code: str | None = None
    """With these too (the customer's id and its Stripe connection's code, when the sender
    knew them), the consumer also reads the connection and the customer's default card in
    that one request. Each is checked against what is read, and read again if it moved."""


class StripeEventReceived(BaseModel):
    """``stripe.event_received``: apply the stored Stripe event (stripe-events)."""

    stripe_event_id: str
    connection_code: str | None = None
    """The connection whose webhook stored the event, so the consumer reads the event and
    the connection in one request. The sweep's re-publications, made from the pending
    index's keys alone, leave it out (the event item says)."""


class ProviderSyncRequested(BaseModel):
    """``customer.provider_sync_requested``: do this to the customer in Stripe."""

    external_customer_id: str
    action: Literal["create", "link", "update"]


class StripeSyncRequested(BaseModel):
    """``stripe.sync_requested``: bring this catalog object's mirror in Stripe up to date
    (stripe-sync). It names the object, not a version: the sync reads the latest."""

    object_type: Literal["plan", "add_on", "coupon", "subscription"]
    lago_id: str


class CatalogSyncStarted(BaseModel):
    """``stripe.catalog_sync_started``: a connection began mirroring the catalog (ask for
    a sync of everything that exists), or letting Stripe bill subscriptions (hand the
    running ones over at their next period) (stripe-sync)."""

    connection_code: str
    catalog: bool = True
    subscriptions: bool = False


class TaxTransactionRequested(BaseModel):
    """``stripe.tax_transaction_requested``: record the tax transaction of an invoice
    Stripe Tax computed, now that it is final (stripe-sync)."""

    invoice_id: str


class AdvanceFeeDue(BaseModel):
    """``usage.advance_fee_due``: invoice what one event added to a pay-in-advance charge
    (advance-fees). The aggregator worked the amount out as it folded the event: the
    charge's amount with the event, less its amount without it."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: str
    external_subscription_id: str
    charge_id: str
    charge_filter_id: str | None
    transaction_id: str
    period: tuple[str, str]
    units: str
    amount_cents: int
    precise_amount: str
    amount_details: dict[str, object]


class ThresholdCheckRequested(BaseModel):
    """``usage.threshold_check_requested``: the subscription's usage of this period grew;
    invoice it if it reached its next progressive billing threshold (usage-invoices)."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: str
    external_subscription_id: str
    period: tuple[str, str]
    """Start and end of the period, as ISO instants."""


class Command(BaseModel, Generic[PayloadT]):
    """An internal outbox event (``OutboxEvent`` with ``webhook`` false), payload typed."""

    event_id: str
    organization_id: str
    event_type: str
    webhook: Literal[False]
    occurred_at: str
    payload: PayloadT


class UsageInvoiceMessage(RootModel[Command[AdvanceFeeDue] | Command[ThresholdCheckRequested]]):
    """What the usage-invoices queue carries (their payloads tell them apart)."""


class StripeSyncMessage(
    RootModel[
        Command[StripeSyncRequested]
        | Command[CatalogSyncStarted]
        | Command[TaxTransactionRequested]
    ]
):
    """What the stripe-sync queue carries: one object to sync, a whole catalog to ask
    for, or an invoice's tax transaction to record (their payloads tell them apart)."""
