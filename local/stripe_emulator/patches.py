"""The few places where localstripe's own classes are adjusted in memory.

Everything else is composed around localstripe in the route handlers; these
changes must reach code paths inside localstripe itself (its events, its retrieve
and update helpers, the objects it exports into event payloads). ``install`` is
idempotent and affects only this process.
"""

from __future__ import annotations

import functools
from typing import Any

from localstripe import resources
from localstripe import webhooks as localstripe_webhooks
from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Customer,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Product,
    Refund,
    SetupIntent,
    StripeObject,
    Subscription,
    try_convert_to_bool,
)

from .accounts import partition_store
from .context import current
from .errors import MissingObject
from .events import emit, schedule_webhook
from .payments import DECLINES, create_card_payment_method, decline_details
from .tax import customer_tax

_NO_ADDRESS = dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state"))

# Fields real Stripe returns that localstripe's objects lack, with their usual value.
_DEFAULT_FIELDS: dict[Any, dict[str, Any]] = {
    PaymentIntent: {
        "confirmation_method": "automatic",
        "payment_method_types": ("card",),
        **dict.fromkeys(
            (
                "application",
                "application_fee_amount",
                "automatic_payment_methods",
                "canceled_at",
                "cancellation_reason",
                "customer_account",
                "description",
                "excluded_payment_method_types",
                "on_behalf_of",
                "processing",
                "receipt_email",
                "review",
                "setup_future_usage",
                "shipping",
                "source",
                "statement_descriptor",
                "statement_descriptor_suffix",
                "transfer_data",
                "transfer_group",
            )
        ),
    },
    SetupIntent: dict.fromkeys(
        (
            "application",
            "automatic_payment_methods",
            "cancellation_reason",
            "description",
            "excluded_payment_method_types",
            "flow_directions",
            "last_setup_error",
            "latest_attempt",
            "mandate",
            "on_behalf_of",
            "single_use_mandate",
        )
    ),
    Charge: {
        "billing_details": {
            "address": _NO_ADDRESS,
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "disputed": False,
        "fraud_details": {},
        **dict.fromkeys(
            (
                "application",
                "application_fee",
                "application_fee_amount",
                "calculated_statement_descriptor",
                "failure_balance_transaction",
                "on_behalf_of",
                "receipt_url",
                "review",
                "shipping",
                "source_transfer",
                "statement_descriptor_suffix",
                "transfer_data",
                "transfer_group",
            )
        ),
    },
    Refund: dict.fromkeys(
        (
            "customer_account",
            "destination_details",
            "reason",
            "receipt_number",
            "source_transfer_reversal",
            "transfer_reversal",
        )
    ),
    PaymentMethod: {"allow_redisplay": "unspecified", "customer_account": None},
    Customer: {"tax_exempt": "none", "test_clock": None},
}

# Request fields naming another object, by the class that object must be.
_REFERENCES: dict[str, Any] = {
    "charge": Charge,
    "customer": Customer,
    "invoice": Invoice,
    "payment_intent": PaymentIntent,
    "payment_method": PaymentMethod,
    "product": Product,
    "subscription": Subscription,
}

# Stripe's test PaymentMethod ids localstripe does not know, by card number.
_TEST_PAYMENT_METHODS = {
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
}


@functools.cache
def install() -> None:
    """Apply the adjustments, once per process."""
    # One partition per account (and no pickling of the store to /tmp on every change).
    partition_store()
    resources.schedule_webhook = schedule_webhook
    localstripe_webhooks.schedule_webhook = schedule_webhook
    for cls, fields in _DEFAULT_FIELDS.items():
        for name, value in fields.items():
            setattr(cls, name, value)
    _patch_stripe_object()
    _patch_payment_methods()
    _patch_payment_intents()
    _patch_charges()
    _patch_customer_tax()


def _check_references(data: dict[str, Any]) -> None:
    """Stripe's "No such customer" for a field naming an object the caller's account
    does not have (localstripe sets some, a SetupIntent's ``customer`` for one, unseen)."""
    for name, cls in _REFERENCES.items():
        value = data.get(name)
        if isinstance(value, str) and value:
            cls._api_retrieve(value)
    settings = data.get("invoice_settings")
    default = settings.get("default_payment_method") if isinstance(settings, dict) else None
    if isinstance(default, str) and default:
        PaymentMethod._api_retrieve(default)


def _patch_stripe_object() -> None:
    init = StripeObject.__init__
    create = StripeObject._api_create.__func__
    retrieve = StripeObject._api_retrieve.__func__
    delete = StripeObject._api_delete.__func__
    update = StripeObject._update

    def init_for_account(self: Any, *args: Any, **kwargs: Any) -> None:
        """Every object remembers the account whose request created it (``_account``):
        its events go to that account's endpoints, and the keyless hosted checkout
        page acts as that account."""
        init(self, *args, **kwargs)
        self._account = current().account

    def api_create(cls: Any, **data: Any) -> Any:
        _check_references(data)
        return create(cls, **data)

    def api_retrieve(cls: Any, object_id: str) -> Any:
        """Stripe's "No such customer: 'cus_x'" instead of a bare "Not Found"."""
        try:
            return retrieve(cls, object_id)
        except UserError as exc:
            if exc.code != 404:
                raise
            raise MissingObject(cls.object, object_id) from None

    def api_delete(cls: Any, object_id: str) -> Any:
        cls._api_retrieve(object_id)  # "No such ..." for what the account does not have
        return delete(cls, object_id)

    def update_checked(self: Any, **data: Any) -> None:
        """Form-encoded "false" becomes False where the field holds a boolean
        (``active`` of an archived product or plan, for example), and referenced
        objects must be the caller's."""
        _check_references(data)
        for name, value in data.items():
            if isinstance(getattr(self, name, None), bool):
                data[name] = try_convert_to_bool(value)
        update(self, **data)

    StripeObject._account = None
    StripeObject.__init__ = init_for_account
    StripeObject._api_create = classmethod(api_create)
    StripeObject._api_retrieve = classmethod(api_retrieve)
    StripeObject._api_delete = classmethod(api_delete)
    StripeObject._update = update_checked


def _patch_payment_methods() -> None:
    canonical = PaymentMethod._try_get_canonical_test_article.__func__
    charging_is_declined = PaymentMethod._charging_is_declined

    def test_article(cls: Any, payment_method_id: str) -> Any:
        number = _TEST_PAYMENT_METHODS.get(payment_method_id)
        if number is not None:
            return create_card_payment_method(number)
        return canonical(cls, payment_method_id)

    def declines_charges(self: Any) -> bool:
        return bool(charging_is_declined(self) or getattr(self, "_card_number", None) in DECLINES)

    PaymentMethod._try_get_canonical_test_article = classmethod(test_article)
    PaymentMethod._charging_is_declined = declines_charges


def _patch_payment_intents() -> None:
    last_error = PaymentIntent.last_payment_error.fget
    on_success = PaymentIntent._on_success

    def succeeded(self: Any) -> None:
        """The charge's event first, then ``payment_intent.succeeded``, as Stripe sends."""
        manual = self.capture_method == "manual"
        emit("charge.captured" if manual else "charge.succeeded", self.latest_charge)
        on_success(self)

    def amount_capturable(self: Any) -> int:
        return int(self.amount) if self.status == "requires_capture" else 0

    def amount_received(self: Any) -> int:
        if self.status != "succeeded":
            return 0
        return int(getattr(self, "_emu_amount_received", self.amount))

    def last_payment_error(self: Any) -> dict[str, Any] | None:
        """Stripe's full error object (type, decline_code, payment_method, ...)."""
        own = getattr(self, "_emu_error", None)
        if own is not None:
            return dict(own)
        error = last_error(self)
        if error is None:
            return None
        if "charge" in error:
            payment_method = PaymentMethod._api_retrieve(self.latest_charge.payment_method)
            return {**decline_details(payment_method), "charge": error["charge"]}
        return {**error, "type": "invalid_request_error"}

    PaymentIntent._on_success = succeeded
    PaymentIntent.amount_capturable = property(amount_capturable)
    PaymentIntent.amount_received = property(amount_received)
    PaymentIntent.last_payment_error = property(last_payment_error)


def _patch_charges() -> None:
    """The Charge fields Billow and Lago read that localstripe lacks."""

    def amount_captured(self: Any) -> int:
        if self.status != "succeeded" or not self.captured:
            return 0
        return int(getattr(self, "_emu_amount_captured", self.amount))

    set_auth_failure = Charge._set_auth_failure

    def declined(self: Any) -> None:
        """The decline's own message ("Your card has insufficient funds.")."""
        set_auth_failure(self)
        payment_method = PaymentMethod._api_retrieve(self.payment_method)
        if getattr(payment_method, "type", None) == "card":
            self.failure_message = decline_details(payment_method)["message"]

    def payment_method_details(self: Any) -> dict[str, Any] | None:
        payment_method = PaymentMethod._api_retrieve(self.payment_method)
        kind = getattr(payment_method, "type", None)
        card = getattr(payment_method, "card", None)
        if kind != "card" or not isinstance(card, dict):
            # A SEPA debit, or one of localstripe's legacy card sources.
            return {"type": kind, kind: {}} if isinstance(kind, str) else None
        return {
            "type": "card",
            "card": {
                "brand": card["brand"],
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": card["country"],
                "exp_month": card["exp_month"],
                "exp_year": card["exp_year"],
                "fingerprint": card["fingerprint"],
                "funding": card["funding"],
                "last4": card["last4"],
                "network": card["brand"],
                "three_d_secure": None,
            },
        }

    def outcome(self: Any) -> dict[str, Any] | None:
        if self.status == "succeeded":
            return {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            }
        if self.status == "failed":
            payment_method = PaymentMethod._api_retrieve(self.payment_method)
            return {
                "network_status": "declined_by_network",
                "reason": decline_details(payment_method)["decline_code"],
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            }
        return None

    Charge._set_auth_failure = declined
    Charge.amount_captured = property(amount_captured)
    Charge.payment_method_details = property(payment_method_details)
    Charge.outcome = property(outcome)


def _patch_customer_tax() -> None:
    """Stripe's ``customer.tax``, which a customer carries only when asked for
    (``expand[]=tax``) wherever it is returned: localstripe's own handlers export
    customers, and would refuse ``tax`` as a field they do not have."""
    export = Customer._export

    def export_with_tax(self: Any, expand: Any = None) -> dict[str, Any]:
        if not isinstance(expand, list) or "tax" not in expand:
            return export(self, expand=expand)
        exported = export(self, expand=[path for path in expand if path != "tax"])
        exported["tax"] = customer_tax(self.address)
        return exported

    Customer._export = export_with_tax
