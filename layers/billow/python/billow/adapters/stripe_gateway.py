"""The one Stripe adapter. Every Stripe call Billow makes goes through here.

Every mutating call carries a deterministic idempotency key derived from Billow's own
ids. The SDK retries connection errors, 429s and ``lock_timeout`` conflicts with the
same key (``max_network_retries``), so a retry can never create a second object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import stripe

from billow.domain.errors import ProviderError
from billow.domain.integrations import STRIPE_API_VERSION
from billow.domain.payments import ProviderPayment
from billow.ports import (
    CardDetails,
    CheckoutSubscription,
    ClosedLink,
    OpenedCheckout,
    PaymentLink,
    PaymentOutcome,
    ProviderCustomer,
    SubscriptionCheckout,
    TaxCalculation,
    TaxRateApplied,
    WebhookRegistration,
)

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


def _as_sent(value: Any) -> Any:
    """A Stripe object as Stripe sent it: the SDK reads decimal strings (a Price's
    ``unit_amount_decimal``) as ``Decimal``, which Stripe writes, and Billow stores, as
    strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {key: _as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    return value


def _card(method: Any) -> CardDetails:
    data = method.to_dict()
    card = data.get("card") or {}
    customer = data.get("customer")
    return CardDetails(
        provider_method_id=data["id"],
        type=data.get("type", "card"),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        created=int(data.get("created") or 0),
        customer=customer if isinstance(customer, str) else (customer or {}).get("id"),
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

    def subscribe_webhook(
        self, endpoint_id: str, events: tuple[str, ...], idempotency_key: str
    ) -> None:
        """Make Billow's endpoint receive ``events`` (those Billow handles grew)."""
        self._call(
            lambda: self.client.v1.webhook_endpoints.update(
                endpoint_id,
                params=_params(enabled_events=list(events)),
                options={"idempotency_key": idempotency_key},
            )
        )

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

    def retrieve_customer(self, customer_id: str) -> ProviderCustomer:
        """The customer in this key's account; Stripe's "No such customer" (a
        ``ProviderError``) when the account has none by that id."""
        customer = self._call(lambda: self.client.v1.customers.retrieve(customer_id))
        data = customer.to_dict()
        return ProviderCustomer(
            id=data["id"], deleted=bool(data.get("deleted")), address=data.get("address")
        )

    def invoice_default_card(self, customer_id: str) -> CardDetails | None:
        """The customer's ``invoice_settings.default_payment_method`` as Stripe holds it now."""
        customer = self._call(
            lambda: self.client.v1.customers.retrieve(
                customer_id, params={"expand": ["invoice_settings.default_payment_method"]}
            )
        )
        settings = customer.invoice_settings
        default = settings.default_payment_method if settings else None
        if isinstance(default, str):  # not expanded: one more look-up
            return self.payment_method(default)
        return _card(default) if default else None

    def default_payment_method(self, customer_id: str) -> CardDetails | None:
        """The invoice default if set, else the newest card (as Lago looks it up)."""
        default = self.invoice_default_card(customer_id)
        if default is not None:
            return default
        cards = self._call(
            lambda: self.client.v1.payment_methods.list(
                params={"customer": customer_id, "type": "card", "limit": 10}
            )
        )
        newest = max(cards.data, key=lambda method: method.created, default=None)
        return _card(newest) if newest else None

    def payment_method(self, payment_method_id: str) -> CardDetails:
        return _card(self._call(lambda: self.client.v1.payment_methods.retrieve(payment_method_id)))

    def detach_payment_method(self, payment_method_id: str, idempotency_key: str) -> None:
        self._call(
            lambda: self.client.v1.payment_methods.detach(
                payment_method_id, options={"idempotency_key": idempotency_key}
            )
        )

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
    ) -> PaymentOutcome:
        """One confirmed, off-session PaymentIntent: a single Stripe call per attempt.

        A card refusal is an outcome, not an exception: Stripe answers 402 with the
        PaymentIntent in the error body, and the caller records the failure.
        """
        params = _params(
            amount=amount,
            currency=currency.lower(),
            customer=customer_id,
            payment_method=payment_method_id,
            payment_method_types=["card"],
            confirm=True,
            off_session=True,
            error_on_requires_action=True,
            description=description,
            metadata=metadata,
            **({"capture_method": "manual"} if manual_capture else {}),
        )
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.CardError as error:
            body = error.error
            failed_intent = body.payment_intent if body else None
            return PaymentOutcome(
                payment_intent_id=failed_intent.id if failed_intent else None,
                status="failed",
                amount=amount,
                error_code=error.code or (body.code if body else None),
                decline_code=body.decline_code if body else None,
                error_message=error.user_message or str(error),
                request_id=error.request_id,
                http_status=error.http_status,
            )
        except stripe.StripeError as error:
            raise _translate(error) from error
        data = intent.to_dict()
        return PaymentOutcome(
            payment_intent_id=data["id"],
            status=data["status"],
            amount=int(data.get("amount") or amount),
            amount_capturable=int(data.get("amount_capturable") or 0),
        )

    def cancel_payment_intent(self, payment_intent_id: str, idempotency_key: str) -> None:
        self._call(
            lambda: self.client.v1.payment_intents.cancel(
                payment_intent_id, options={"idempotency_key": idempotency_key}
            )
        )

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
    ) -> PaymentLink:
        session = self._call(
            lambda: self.client.v1.checkout.sessions.create(
                params=_params(
                    mode="payment",
                    customer=customer_id,
                    success_url=success_url,
                    payment_method_types=["card"],
                    line_items=[
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": currency.lower(),
                                "unit_amount": amount,
                                "product_data": {"name": product_name},
                            },
                        }
                    ],
                    metadata=metadata,
                    payment_intent_data={
                        "description": description,
                        "setup_future_usage": "off_session",
                        "metadata": metadata,
                    },
                ),
                options={"idempotency_key": idempotency_key},
            )
        )
        return PaymentLink(session_id=session.id, url=str(session.url))

    def expire_payment_link(self, session_id: str) -> ClosedLink:
        """Close an open payment link. A link the customer already paid cannot be closed:
        the answer then names the PaymentIntent that paid (Stripe refuses to expire a
        completed session, which is how a payment racing the expiry is caught)."""
        session = self._call(lambda: self.client.v1.checkout.sessions.retrieve(session_id))
        if session.status == "open":
            try:
                self._call(lambda: self.client.v1.checkout.sessions.expire(session_id))
                return ClosedLink()
            except ProviderError:
                session = self._call(lambda: self.client.v1.checkout.sessions.retrieve(session_id))
        if session.status == "complete":
            intent = session.to_dict().get("payment_intent")
            return ClosedLink(paid_with=intent.get("id") if isinstance(intent, dict) else intent)
        if session.status == "open":
            raise ProviderError("The payment link could not be closed", kind="api")
        return ClosedLink()

    def create_subscription_checkout(
        self, checkout: SubscriptionCheckout, idempotency_key: str
    ) -> OpenedCheckout:
        """Stripe's hosted page for a new subscription. What the page collects is saved on
        the customer where Stripe needs it (a taxable address, a tax id's business name)."""
        params = _params(
            mode="subscription",
            customer=checkout.customer_id,
            line_items=[{"price": checkout.price_id, "quantity": 1}],
            success_url=checkout.success_url,
            cancel_url=checkout.cancel_url,
            expires_at=checkout.expires_at,
            metadata=checkout.metadata,
            subscription_data={"metadata": checkout.metadata},
        )
        if checkout.billing_cycle_anchor is not None:
            params["subscription_data"]["billing_cycle_anchor"] = checkout.billing_cycle_anchor
        if checkout.allow_promotion_codes:
            params["allow_promotion_codes"] = True
        if checkout.collect_billing_address:
            params["billing_address_collection"] = "required"
        if checkout.collect_phone_number:
            params["phone_number_collection"] = {"enabled": True}
        customer_update: dict[str, str] = {}
        if checkout.tax_id_collection:
            params["tax_id_collection"] = {"enabled": True}
            customer_update["name"] = "auto"
        if checkout.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        if checkout.automatic_tax or checkout.collect_billing_address:
            customer_update["address"] = "auto"
        if customer_update:
            params["customer_update"] = customer_update
        session = self._call(
            lambda: self.client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        )
        return OpenedCheckout(
            session_id=session.id, url=str(session.url), expires_at=int(session.expires_at)
        )

    def close_checkout(self, session_id: str) -> str:
        """Expire an open session so nobody can complete it; returns the status it ends
        in: ``expired``, or ``complete`` when the customer got there first."""
        session = self._call(lambda: self.client.v1.checkout.sessions.retrieve(session_id))
        if session.status == "open":
            try:
                return str(
                    self._call(lambda: self.client.v1.checkout.sessions.expire(session_id)).status
                )
            except ProviderError:
                session = self._call(lambda: self.client.v1.checkout.sessions.retrieve(session_id))
        return str(session.status)

    def checkout_subscription(self, subscription_id: str) -> CheckoutSubscription:
        subscription = self._call(lambda: self.client.v1.subscriptions.retrieve(subscription_id))
        data = subscription.to_dict()
        method = data.get("default_payment_method")
        return CheckoutSubscription(
            id=data["id"],
            status=data["status"],
            start_date=int(data["start_date"]),
            default_payment_method=method.get("id") if isinstance(method, dict) else method,
            price_id=str(data["items"]["data"][0]["price"]["id"]),
        )

    def calculate_tax(
        self, customer_id: str, currency: str, lines: dict[str, int], idempotency_key: str
    ) -> TaxCalculation:
        """Stripe Tax on ``lines`` (amount by reference, tax excluded) for the customer's
        address as Stripe holds it."""
        calculation = self._call(
            lambda: self.client.v1.tax.calculations.create(
                params=_params(
                    currency=currency.lower(),
                    customer=customer_id,
                    line_items=[
                        {"amount": amount, "reference": reference, "tax_behavior": "exclusive"}
                        for reference, amount in lines.items()
                    ],
                    expand=["line_items"],
                ),
                options={"idempotency_key": idempotency_key},
            )
        )
        data = calculation.to_dict()
        return TaxCalculation(
            id=data["id"],
            line_taxes={
                str(line["reference"]): int(line["amount_tax"])
                for line in data["line_items"]["data"]
            },
            rates=[
                TaxRateApplied(
                    country=entry["tax_rate_details"].get("country"),
                    state=entry["tax_rate_details"].get("state"),
                    tax_type=str(entry["tax_rate_details"].get("tax_type") or "tax"),
                    percentage=str(entry["tax_rate_details"]["percentage_decimal"]),
                    amount=int(entry["amount"]),
                    taxable_amount=int(entry["taxable_amount"]),
                )
                for entry in data["tax_breakdown"]
            ],
        )

    def record_tax_transaction(
        self, calculation_id: str, reference: str, idempotency_key: str
    ) -> str:
        transaction = self._call(
            lambda: self.client.v1.tax.transactions.create_from_calculation(
                params={"calculation": calculation_id, "reference": reference},
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(transaction.id)

    def create_portal_configuration(
        self, features: dict[str, Any], metadata: dict[str, str], idempotency_key: str
    ) -> str:
        configuration = self._call(
            lambda: self.client.v1.billing_portal.configurations.create(
                params=_params(features=features, login_page={"enabled": True}, metadata=metadata),
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(configuration.id)

    def create_portal_session(
        self, customer_id: str, configuration_id: str, return_url: str, idempotency_key: str
    ) -> str:
        session = self._call(
            lambda: self.client.v1.billing_portal.sessions.create(
                params={
                    "customer": customer_id,
                    "configuration": configuration_id,
                    "return_url": return_url,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(session.url)

    def payment_intent(self, payment_intent_id: str) -> ProviderPayment:
        intent = self._call(lambda: self.client.v1.payment_intents.retrieve(payment_intent_id))
        return ProviderPayment.from_stripe(intent.to_dict())

    def find_attempt_payment(
        self, customer_id: str, invoice_id: str, attempt: int, created_since: int
    ) -> ProviderPayment | None:
        """The PaymentIntent of one charge attempt, found by its metadata among the
        customer's PaymentIntents (newest first, so the walk stops at ``created_since``)."""
        intents = self._call(
            lambda: self.client.v1.payment_intents.list(
                params={"customer": customer_id, "limit": 100}
            )
        )
        for intent in self._each(intents):
            if intent.created < created_since:
                return None
            payment = ProviderPayment.from_stripe(intent.to_dict())
            if payment.invoice_id == invoice_id and payment.attempt == attempt:
                return payment
        return None

    def events_since(self, created_gte: int, types: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Every event of ``types`` created at or after ``created_gte`` (Stripe keeps 30
        days of them), page after page."""
        events = self._call(
            lambda: self.client.v1.events.list(
                params=_params(created={"gte": created_gte}, types=list(types), limit=100)
            )
        )
        for event in self._each(events):
            yield _as_sent(event.to_dict())

    @classmethod
    def _each(cls, listing: Any) -> Iterator[Any]:
        """A list's items across its pages; a page that fails is a ProviderError too."""
        items = listing.auto_paging_iter()
        while True:
            item = cls._call(lambda: next(items, None))
            if item is None:
                return
            yield item

    def refund(self, payment_intent_id: str, idempotency_key: str) -> str:
        refund = self._call(
            lambda: self.client.v1.refunds.create(
                params={"payment_intent": payment_intent_id},
                options={"idempotency_key": idempotency_key},
            )
        )
        return refund.id

    # -- the catalog mirrored in Stripe Billing --------------------------------------------

    def create_product(self, name: str, metadata: dict[str, str], idempotency_key: str) -> str:
        product = self._call(
            lambda: self.client.v1.products.create(
                params={"name": name, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        )
        return product.id

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
        item = self._call(
            lambda: self.client.v1.invoice_items.create(
                params={
                    "customer": customer_id,
                    "invoice": invoice_id,
                    "price_data": {
                        "currency": currency,
                        "product": product_id,
                        "unit_amount": amount,
                    },
                    "description": description,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return item.id

    def update_product(
        self, product_id: str, name: str, active: bool, idempotency_key: str
    ) -> None:
        self._call(
            lambda: self.client.v1.products.update(
                product_id,
                params={"name": name, "active": active},
                options={"idempotency_key": idempotency_key},
            )
        )

    def create_price(
        self,
        *,
        product_id: str,
        amount: int,
        currency: str,
        recurring: tuple[str, int] | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        params = _params(
            product=product_id, unit_amount=amount, currency=currency, metadata=metadata
        )
        if recurring is not None:
            params["recurring"] = {"interval": recurring[0], "interval_count": recurring[1]}
        price = self._call(
            lambda: self.client.v1.prices.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        )
        return price.id

    def archive_price(self, price_id: str, idempotency_key: str) -> None:
        self._call(
            lambda: self.client.v1.prices.update(
                price_id, params={"active": False}, options={"idempotency_key": idempotency_key}
            )
        )

    def create_coupon(
        self,
        terms: dict[str, object],
        name: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        coupon = self._call(
            lambda: self.client.v1.coupons.create(
                params=_params(**terms, name=name, metadata=metadata),
                options={"idempotency_key": idempotency_key},
            )
        )
        return coupon.id

    def rename_coupon(self, coupon_id: str, name: str, idempotency_key: str) -> None:
        self._call(
            lambda: self.client.v1.coupons.update(
                coupon_id, params={"name": name}, options={"idempotency_key": idempotency_key}
            )
        )

    def delete_coupon(self, coupon_id: str) -> None:
        """Customers keep the discounts they already have; deleting twice is done."""
        try:
            self._call(lambda: self.client.v1.coupons.delete(coupon_id))
        except ProviderError as error:
            if error.http_status != 404:
                raise

    # -- subscriptions Stripe Billing invoices ----------------------------------------------

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
    ) -> str:
        params = _params(
            customer=customer_id,
            items=[{"price": price_id}],
            metadata=metadata,
            proration_behavior="create_prorations",
            # No card to charge is an error now, not a subscription left incomplete.
            payment_behavior="error_if_incomplete",
        )
        if payment_method_id is not None:
            params["default_payment_method"] = payment_method_id
        if billing_cycle_anchor is not None:
            params["billing_cycle_anchor"] = billing_cycle_anchor
        if cancel_at is not None:
            params["cancel_at"] = cancel_at
        if automatic_tax:
            # Stripe Tax: a customer it cannot locate is refused now, not billed untaxed.
            params["automatic_tax"] = {"enabled": True}
        subscription = self._call(
            lambda: self.client.v1.subscriptions.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        )
        return subscription.id

    def subscription_item(self, subscription_id: str) -> tuple[str, str]:
        """The (item id, price id) of a one-item subscription."""
        subscription = self._call(lambda: self.client.v1.subscriptions.retrieve(subscription_id))
        item = subscription["items"]["data"][0]
        return str(item["id"]), str(item["price"]["id"])

    def change_subscription_price(
        self,
        subscription_id: str,
        item_id: str,
        price_id: str,
        prorate: bool,
        idempotency_key: str,
    ) -> None:
        """Move the item to another Price: at once, prorating what is left of the period,
        or (``prorate`` false) from the next invoice on."""
        self._call(
            lambda: self.client.v1.subscriptions.update(
                subscription_id,
                params={
                    "items": [{"id": item_id, "price": price_id}],
                    "proration_behavior": "create_prorations" if prorate else "none",
                },
                options={"idempotency_key": idempotency_key},
            )
        )

    def cancel_subscription(self, subscription_id: str) -> None:
        """Cancel at once; one already canceled (in Stripe's dashboard, say) is done."""
        subscription = self._call(lambda: self.client.v1.subscriptions.retrieve(subscription_id))
        if subscription.status == "canceled":
            return
        self._call(lambda: self.client.v1.subscriptions.cancel(subscription_id))
