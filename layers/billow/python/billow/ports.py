"""The Stripe port: what Billow asks of a payment provider, in Billow's own terms."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel


class CardDetails(BaseModel):
    provider_method_id: str
    type: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    created: int = 0


class WebhookRegistration(BaseModel):
    endpoint_id: str
    secret: str


class PaymentProvider(Protocol):
    def check_credentials(self) -> None: ...

    def register_webhook(
        self, url: str, events: tuple[str, ...], idempotency_key: str
    ) -> WebhookRegistration: ...

    def delete_webhook(self, endpoint_id: str) -> None: ...

    def create_customer(
        self, profile: dict[str, object], metadata: dict[str, str], idempotency_key: str
    ) -> str: ...

    def update_customer(
        self, customer_id: str, profile: dict[str, object], idempotency_key: str
    ) -> None: ...

    def default_payment_method(self, customer_id: str) -> CardDetails | None: ...

    def payment_method(self, payment_method_id: str) -> CardDetails: ...

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
