"""The one Stripe adapter. Every Stripe call Billow makes goes through here.

Every mutating call carries a deterministic idempotency key derived from Billow's own
ids. The SDK retries connection errors, 429s and ``lock_timeout`` conflicts with the
same key (``max_network_retries``), so a retry can never create a second object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from billow.domain.errors import ProviderError
from billow.domain.integrations import STRIPE_API_VERSION
from billow.ports import CardDetails, WebhookRegistration

T = TypeVar("T")

_KINDS: tuple[tuple[type[stripe.StripeError], str], ...] = (
    (stripe.AuthenticationError, "authentication"),
    (stripe.PermissionError, "permission"),
    (stripe.CardError, "card"),
    (stripe.RateLimitError, "rate_limit"),
    (stripe.APIConnectionError, "connection"),
    (stripe.IdempotencyError, "idempotency"),
    (stripe.InvalidRequestError, "invalid_request"),
)


def _translate(error: stripe.StripeError) -> ProviderError:
    kind = next((name for cls, name in _KINDS if isinstance(error, cls)), "api")
    # The SDK sets ``code`` only on some error classes; the body always carries it.
    code = error.code or (error.error.code if error.error else None)
    return ProviderError(
        error.user_message or str(error) or "Stripe error",
        kind=kind,
        code=code,
        http_status=error.http_status,
        request_id=error.request_id,
    )


def _params(**values: Any) -> Any:
    """Request parameters built from Billow's values; Stripe validates them, the SDK's
    TypedDicts cannot describe values computed at run time."""
    return values


def _card(method: Any) -> CardDetails:
    data = method.to_dict()
    card = data.get("card") or {}
    return CardDetails(
        provider_method_id=data["id"],
        type=data.get("type", "card"),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        created=int(data.get("created") or 0),
    )


class StripeGateway:
    """A Stripe account, reached with one secret key."""

    def __init__(self, secret_key: str, api_base: str | None = None) -> None:
        bases: dict[str, str] = (
            {"api": api_base, "files": api_base, "connect": api_base} if api_base else {}
        )
        self.client = stripe.StripeClient(
            secret_key,
            stripe_version=STRIPE_API_VERSION,
            base_addresses=bases,  # type: ignore[arg-type]
            max_network_retries=3,
        )

    @staticmethod
    def _call(operation: Callable[[], T]) -> T:
        try:
            return operation()
        except stripe.StripeError as error:
            raise _translate(error) from error

    def check_credentials(self) -> None:
        self._call(lambda: self.client.v1.customers.list(params={"limit": 1}))

    def register_webhook(
        self, url: str, events: tuple[str, ...], idempotency_key: str
    ) -> WebhookRegistration:
        endpoint = self._call(
            lambda: self.client.v1.webhook_endpoints.create(
                params=_params(
                    url=url,
                    enabled_events=list(events),
                    api_version=STRIPE_API_VERSION,
                    description="Billow",
                ),
                options={"idempotency_key": idempotency_key},
            )
        )
        return WebhookRegistration(endpoint_id=endpoint.id, secret=endpoint.secret or "")

    def delete_webhook(self, endpoint_id: str) -> None:
        try:
            self._call(lambda: self.client.v1.webhook_endpoints.delete(endpoint_id))
        except ProviderError as error:
            if error.http_status != 404:
                raise

    def create_customer(
        self, profile: dict[str, object], metadata: dict[str, str], idempotency_key: str
    ) -> str:
        customer = self._call(
            lambda: self.client.v1.customers.create(
                params=_params(**profile, metadata=metadata),
                options={"idempotency_key": idempotency_key},
            )
        )
        return customer.id

    def update_customer(
        self, customer_id: str, profile: dict[str, object], idempotency_key: str
    ) -> None:
        self._call(
            lambda: self.client.v1.customers.update(
                customer_id,
                params=_params(**profile),
                options={"idempotency_key": idempotency_key},
            )
        )

    def default_payment_method(self, customer_id: str) -> CardDetails | None:
        """The invoice default if set, else the newest card (as Lago looks it up)."""
        customer = self._call(lambda: self.client.v1.customers.retrieve(customer_id))
        settings = customer.to_dict().get("invoice_settings") or {}
        default = settings.get("default_payment_method")
        if isinstance(default, str):
            return self.payment_method(default)
        cards = self._call(
            lambda: self.client.v1.payment_methods.list(
                params={"customer": customer_id, "type": "card", "limit": 10}
            )
        )
        newest = max(cards.data, key=lambda method: method.created, default=None)
        return _card(newest) if newest else None

    def payment_method(self, payment_method_id: str) -> CardDetails:
        return _card(self._call(lambda: self.client.v1.payment_methods.retrieve(payment_method_id)))

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> None:
        self._call(
            lambda: self.client.v1.customers.update(
                customer_id,
                params={"invoice_settings": {"default_payment_method": payment_method_id}},
                options={"idempotency_key": idempotency_key},
            )
        )

    def setup_intent_payment_method(self, setup_intent_id: str) -> str | None:
        intent = self._call(lambda: self.client.v1.setup_intents.retrieve(setup_intent_id))
        method = intent.to_dict().get("payment_method")
        return method if isinstance(method, str) else (method or {}).get("id")

    def create_setup_checkout(
        self,
        customer_id: str,
        success_url: str,
        payment_method_types: list[str],
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        session = self._call(
            lambda: self.client.v1.checkout.sessions.create(
                params=_params(
                    mode="setup",
                    customer=customer_id,
                    success_url=success_url,
                    payment_method_types=payment_method_types,
                    metadata=metadata,
                    setup_intent_data={"metadata": metadata},
                ),
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(session.url)
