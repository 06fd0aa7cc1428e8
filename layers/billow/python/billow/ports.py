"""The Stripe port: what Billow asks of a payment provider, in Billow's own terms."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from billow.domain.payments import ProviderPayment


class CardDetails(BaseModel):
    provider_method_id: str
    type: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    created: int = 0
    customer: str | None = None
    """The Stripe customer it is attached to; None once detached (it never comes back)."""


class ProviderCustomer(BaseModel):
    """A Stripe customer as a retrieve reports it: a deleted one still answers, flagged."""

    id: str
    deleted: bool = False
    address: dict[str, str | None] | None = None


class WebhookRegistration(BaseModel):
    endpoint_id: str
    secret: str


class PaymentOutcome(BaseModel):
    """What a PaymentIntent came to: Stripe's status, and the card error when it failed."""

    payment_intent_id: str | None
    status: str
    """Stripe's PaymentIntent status, or ``failed`` for a refused confirmation."""
    amount: int = 0
    amount_capturable: int = 0
    error_code: str | None = None
    decline_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    http_status: int | None = None

    @property
    def failed(self) -> bool:
        return self.status in {"failed", "canceled", "requires_payment_method"}


class PaymentLink(BaseModel):
    session_id: str
    url: str


class SubscriptionCheckout(BaseModel):
    """A Stripe Checkout Session that subscribes a customer to one recurring Price."""

    customer_id: str
    price_id: str
    success_url: str
    cancel_url: str
    allow_promotion_codes: bool = False
    collect_billing_address: bool = False
    collect_phone_number: bool = False
    tax_id_collection: bool = False
    automatic_tax: bool = False
    billing_cycle_anchor: int | None = None
    expires_at: int
    metadata: dict[str, str]
    """On the session and on the subscription Checkout creates."""


class OpenedCheckout(BaseModel):
    session_id: str
    url: str
    expires_at: int


class CheckoutSubscription(BaseModel):
    """The subscription a completed Checkout Session made, as Stripe holds it."""

    id: str
    status: str
    start_date: int
    default_payment_method: str | None
    price_id: str


class TaxRateApplied(BaseModel):
    """One rate of a Stripe Tax calculation: where it applies and what it taxed."""

    country: str | None
    state: str | None
    tax_type: str
    percentage: str
    amount: int
    taxable_amount: int


class TaxCalculation(BaseModel):
    id: str
    line_taxes: dict[str, int]
    """Tax per line, by the line's reference."""
    rates: list[TaxRateApplied]


class ClosedLink(BaseModel):
    """A payment link after Billow closed it, or found it already used."""

    paid_with: str | None = None
    """The PaymentIntent that paid through the link, when the customer paid before it
    could be closed; None when the link is closed and can no longer take money."""


class PaymentProvider(Protocol):
    def check_credentials(self) -> None: ...

    def register_webhook(
        self, url: str, events: tuple[str, ...], idempotency_key: str
    ) -> WebhookRegistration: ...

    def subscribe_webhook(
        self, endpoint_id: str, events: tuple[str, ...], idempotency_key: str
    ) -> None: ...

    def delete_webhook(self, endpoint_id: str) -> None: ...

    def create_customer(
        self, profile: dict[str, object], metadata: dict[str, str], idempotency_key: str
    ) -> str: ...

    def update_customer(
        self, customer_id: str, profile: dict[str, object], idempotency_key: str
    ) -> None: ...

    def retrieve_customer(self, customer_id: str) -> ProviderCustomer: ...

    def default_payment_method(self, customer_id: str) -> CardDetails | None: ...

    def invoice_default_card(self, customer_id: str) -> CardDetails | None: ...

    def payment_method(self, payment_method_id: str) -> CardDetails: ...

    def detach_payment_method(self, payment_method_id: str, idempotency_key: str) -> None: ...

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> None: ...

    def setup_intent_payment_method(self, setup_intent_id: str) -> str | None: ...

    def create_setup_checkout(
        self,
        customer_id: str,
        success_url: str,
        payment_method_types: list[str],
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str: ...

    def create_payment_intent(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        manual_capture: bool,
        idempotency_key: str,
    ) -> PaymentOutcome: ...

    def cancel_payment_intent(self, payment_intent_id: str, idempotency_key: str) -> None: ...

    def create_payment_link(
        self,
        *,
        customer_id: str,
        amount: int,
        currency: str,
        product_name: str,
        description: str,
        metadata: dict[str, str],
        success_url: str,
        idempotency_key: str,
    ) -> PaymentLink: ...

    def expire_payment_link(self, session_id: str) -> ClosedLink: ...

    def create_subscription_checkout(
        self, checkout: SubscriptionCheckout, idempotency_key: str
    ) -> OpenedCheckout: ...

    def close_checkout(self, session_id: str) -> str: ...

    def checkout_subscription(self, subscription_id: str) -> CheckoutSubscription: ...

    def calculate_tax(
        self, customer_id: str, currency: str, lines: dict[str, int], idempotency_key: str
    ) -> TaxCalculation: ...

    def record_tax_transaction(
        self, calculation_id: str, reference: str, idempotency_key: str
    ) -> str: ...

    def create_portal_configuration(
        self, features: dict[str, Any], metadata: dict[str, str], idempotency_key: str
    ) -> str: ...

    def create_portal_session(
        self, customer_id: str, configuration_id: str, return_url: str, idempotency_key: str
    ) -> str: ...

    def payment_intent(self, payment_intent_id: str) -> ProviderPayment: ...

    def find_attempt_payment(
        self, customer_id: str, invoice_id: str, attempt: int, created_since: int
    ) -> ProviderPayment | None: ...

    def events_since(self, created_gte: int, types: Sequence[str]) -> Iterator[dict[str, Any]]: ...

    def refund(self, payment_intent_id: str, idempotency_key: str) -> str: ...

    def create_product(self, name: str, metadata: dict[str, str], idempotency_key: str) -> str: ...

    def add_invoice_item(
        self,
        *,
        customer_id: str,
        invoice_id: str,
        product_id: str,
        amount: int,
        currency: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        """Add an amount to a draft invoice, as a line of ``product_id``."""
        ...

    def update_product(
        self, product_id: str, name: str, active: bool, idempotency_key: str
    ) -> None: ...

    def create_price(
        self,
        *,
        product_id: str,
        amount: int,
        currency: str,
        recurring: tuple[str, int] | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str: ...

    def archive_price(self, price_id: str, idempotency_key: str) -> None: ...

    def create_coupon(
        self,
        terms: dict[str, object],
        name: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str: ...

    def rename_coupon(self, coupon_id: str, name: str, idempotency_key: str) -> None: ...

    def delete_coupon(self, coupon_id: str) -> None: ...

    def create_subscription(
        self,
        *,
        customer_id: str,
        price_id: str,
        payment_method_id: str | None,
        billing_cycle_anchor: int | None,
        cancel_at: int | None,
        metadata: dict[str, str],
        automatic_tax: bool,
        idempotency_key: str,
    ) -> str: ...

    def subscription_item(self, subscription_id: str) -> tuple[str, str]: ...

    def change_subscription_price(
        self,
        subscription_id: str,
        item_id: str,
        price_id: str,
        prorate: bool,
        idempotency_key: str,
    ) -> None: ...

    def cancel_subscription(self, subscription_id: str) -> None: ...
