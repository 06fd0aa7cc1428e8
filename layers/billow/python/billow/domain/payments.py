"""What Stripe says about a payment, and whether that payment really pays an invoice.

Billow settles an invoice only from a PaymentIntent it created for that invoice: one of
its charge attempts, or a payment through its payment link. Stripe signs its events, but
anyone with access to the Stripe account (a dashboard user, another integration) can
create a PaymentIntent whose metadata names an invoice; its money must never mark the
invoice paid. So the intent must carry Billow's marks (organization, invoice, and the
attempt or the payment link) and ask for exactly what the invoice asked for: the same
customer, the same currency and the whole amount (Billow never takes partial payments).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from billow.domain.invoices import Invoice

Applied = Literal["processed", "ignored"]
"""What applying a fact Stripe reports (an event, or what Billow looked up) did:
``processed`` changed Billow, or found the change made already; ``ignored``: the fact
concerns nothing Billow holds or would change."""

SUCCEEDED = "succeeded"
FAILED_STATUSES = frozenset({"failed", "canceled", "requires_payment_method"})
"""Statuses that end an attempt without money (``failed`` is Billow's word for a refused
confirmation, which Stripe answers with an error rather than a status)."""
LINK_PAYMENT_TYPE = "one-time"
"""``payment_type`` in the metadata of a payment link's PaymentIntent (as Lago marks them)."""


class ProviderPayment(BaseModel):
    """A Stripe PaymentIntent in Billow's terms, read from an event or from Stripe's API."""

    id: str
    status: str
    amount: int
    amount_received: int = 0
    currency: str
    customer: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created: int = 0
    error_code: str | None = None
    decline_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_stripe(cls, intent: dict[str, Any]) -> ProviderPayment:
        """Stripe's JSON (``customer`` may be expanded; ``last_payment_error`` may be null)."""
        customer = intent.get("customer")
        error = intent.get("last_payment_error") or {}
        return cls(
            id=str(intent["id"]),
            status=str(intent.get("status") or ""),
            amount=int(intent.get("amount") or 0),
            amount_received=int(intent.get("amount_received") or 0),
            currency=str(intent.get("currency") or ""),
            customer=customer.get("id") if isinstance(customer, dict) else customer,
            metadata={str(k): str(v) for k, v in (intent.get("metadata") or {}).items()},
            created=int(intent.get("created") or 0),
            error_code=error.get("code"),
            decline_code=error.get("decline_code"),
            error_message=error.get("message"),
        )

    @property
    def organization_id(self) -> str | None:
        return self.metadata.get("lago_organization_id")

    @property
    def invoice_id(self) -> str | None:
        return self.metadata.get("lago_invoice_id")

    @property
    def attempt(self) -> int | None:
        """The charge attempt it was created for; None for a payment link's payment."""
        value = self.metadata.get("payment_attempt")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


def payment_mismatch(
    payment: ProviderPayment, invoice: Invoice, stripe_customer_id: str | None
) -> str | None:
    """Why ``payment`` does not pay ``invoice`` (None when it does)."""
    if payment.organization_id != invoice.organization_id or payment.invoice_id != invoice.lago_id:
        return "other_invoice"
    if "payment_attempt" in payment.metadata:
        attempt = payment.attempt
        if attempt is None or not 1 <= attempt <= invoice.payment_attempts:
            return "unknown_attempt"
    elif payment.metadata.get("payment_type") != LINK_PAYMENT_TYPE:
        return "not_created_by_billow"
    if stripe_customer_id is None or payment.customer != stripe_customer_id:
        return "customer_mismatch"
    if payment.currency.upper() != invoice.currency.upper():
        return "currency_mismatch"
    if payment.amount != invoice.total_amount_cents or (
        payment.succeeded and payment.amount_received != payment.amount
    ):
        return "amount_mismatch"
    return None
