"""PaymentIntents, payment methods and customers the way Billow drives them.

localstripe does the bookkeeping (charges, 3-D Secure flags, declines); these
handlers add the parameters and events it lacks and answer card failures the way
Stripe does: HTTP 402, ``type: card_error``, the PaymentIntent in the error body.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from localstripe.resources import (
    Customer,
    PaymentIntent,
    PaymentMethod,
    store,
)

from .common import (
    Routes,
    all_of,
    as_bool,
    as_dict,
    as_int,
    as_str_list,
    as_url,
    newest_first,
    read_params,
    reject_unknown,
    require,
)
from .errors import MissingObject, StripeApiError, json_response
from .events import emit
from .money import display, minimum_charge

# Test cards whose charges Stripe declines, with the error it reports.
# localstripe declines 0341 only; 0002 and friends it refuses on attach but charges.
_DECLINED = "Your card was declined."
DECLINES: dict[str, tuple[str, str]] = {
    "4000000000000002": ("generic_decline", _DECLINED),
    "4000000000000341": ("generic_decline", _DECLINED),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds."),
    "4000000000009987": ("lost_card", _DECLINED),
    "4000000000009979": ("stolen_card", _DECLINED),
}

_CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
)
_CANCELLATION_REASONS = ("abandoned", "duplicate", "fraudulent", "requested_by_customer")
# Card fields Stripe checks when a card is created: (field, format, code, message).
_CARD_CHECKS = (
    ("number", r"\d{16}", "invalid_number", "Your card number is invalid."),
    (
        "exp_month",
        r"0?[1-9]|1[0-2]",
        "invalid_expiry_month",
        "Your card's expiration month is invalid.",
    ),
    ("exp_year", r"\d{2}|\d{4}", "invalid_expiry_year", "Your card's expiration year is invalid."),
    ("cvc", r"\d{3}", "invalid_cvc", "Your card's security code is invalid."),
)


def create_card_payment_method(number: str) -> Any:
    """A card PaymentMethod for a Stripe test card number, valid for a few years."""
    year = datetime.date.today().year + 3
    card = {"number": number, "exp_month": "12", "exp_year": str(year), "cvc": "123"}
    return PaymentMethod(type="card", card=card)


def _error_details(
    code: str, decline_code: str, message: str, payment_method: Any
) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": message,
        "doc_url": "https://stripe.com/docs/error-codes/" + code.replace("_", "-"),
        "payment_method": payment_method._export(),
    }


def decline_details(payment_method: Any) -> dict[str, Any]:
    """The ``card_error`` Stripe reports when ``payment_method`` is declined."""
    number = getattr(payment_method, "_card_number", "")
    decline_code, message = DECLINES.get(number, ("generic_decline", _DECLINED))
    return _error_details("card_declined", decline_code, message, payment_method)


def authentication_required_details(payment_method: Any) -> dict[str, Any]:
    """Stripe's error for a 3-D Secure card charged without the customer present."""
    message = "Your card was declined. This transaction requires authentication."
    return _error_details(
        "authentication_required", "authentication_required", message, payment_method
    )


def _card_error(payment_intent: Any) -> StripeApiError:
    details = dict(payment_intent.last_payment_error)
    return StripeApiError(
        402, details.pop("message"), **details, payment_intent=payment_intent._export()
    )


def attach_payment_method(payment_method: Any, customer_id: str) -> None:
    PaymentMethod._api_attach(payment_method.id, customer=customer_id)
    emit("payment_method.attached", payment_method)


def _after_attempt(payment_intent: Any) -> None:
    """Events Stripe sends once a confirmation got somewhere, and saving the card."""
    status = payment_intent.status
    if status == "requires_action":
        emit("payment_intent.requires_action", payment_intent)
    elif status == "requires_capture":
        emit("charge.succeeded", payment_intent.latest_charge)
        emit("payment_intent.amount_capturable_updated", payment_intent)
    if status in ("succeeded", "requires_capture") and payment_intent.setup_future_usage:
        payment_method = PaymentMethod._api_retrieve(payment_intent.payment_method)
        if payment_intent.customer and payment_method.customer is None:
            attach_payment_method(payment_method, payment_intent.customer)


def _failed_attempt(payment_intent: Any, error: dict[str, Any]) -> None:
    """Stripe's state after a failed attempt: the PaymentIntent is back to
    ``requires_payment_method`` with the card moved into ``last_payment_error``."""
    payment_intent._emu_error = error
    payment_intent.payment_method = None
    payment_intent.next_action = None
    emit("payment_intent.payment_failed", payment_intent)


def _on_decline(payment_intent: Any) -> Callable[[], None]:
    """localstripe's ``on_failure_now`` hook for a declined charge: Stripe's events, then
    the request fails with the ``card_error`` (localstripe would keep the card on the
    PaymentIntent and report a bare decline)."""

    def report() -> None:
        charge = payment_intent.latest_charge
        payment_method = PaymentMethod._api_retrieve(charge.payment_method)
        emit("charge.failed", charge)
        _failed_attempt(payment_intent, {**decline_details(payment_method), "charge": charge.id})
        raise _card_error(payment_intent)

    return report


def confirm_payment_intent(payment_intent: Any, *, fail_on_action: bool) -> None:
    """Confirm with localstripe, raising Stripe's card errors.

    ``fail_on_action`` (``off_session`` or ``error_on_requires_action``): a card that
    needs 3-D Secure fails with ``authentication_required`` and the PaymentIntent
    goes back to ``requires_payment_method`` instead of waiting for the customer.
    """
    if not payment_intent.payment_method:
        raise StripeApiError(
            400,
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    payment_intent._emu_error = None
    payment_method = PaymentMethod._api_retrieve(payment_intent.payment_method)
    if fail_on_action and payment_method._requires_authentication():
        _failed_attempt(payment_intent, authentication_required_details(payment_method))
        raise _card_error(payment_intent)
    payment_intent._confirm(on_failure_now=_on_decline(payment_intent))
    _after_attempt(payment_intent)


def authenticate_payment_intent(payment_intent: Any, *, success: bool) -> None:
    """Finish a 3-D Secure challenge the way the customer answered it."""
    if payment_intent.status != "requires_action":
        raise StripeApiError(
            400,
            "This PaymentIntent is not waiting for authentication: its status is "
            f"{payment_intent.status}.",
            code="payment_intent_unexpected_state",
        )
    payment_intent.next_action = None
    if success:
        payment_intent._create_charge(on_failure_now=_on_decline(payment_intent))
        _after_attempt(payment_intent)
        return
    payment_method = PaymentMethod._api_retrieve(payment_intent.payment_method)
    error = {
        "type": "invalid_request_error",
        "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication. You can provide "
        "payment_method_data or a new PaymentMethod to attempt to fulfill this "
        "PaymentIntent again.",
        "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
        "payment_method": payment_method._export(),
    }
    _failed_attempt(payment_intent, error)


def cancel_payment_intent(payment_intent: Any, reason: str | None) -> None:
    if payment_intent.status not in _CANCELABLE:
        raise StripeApiError(
            400,
            "You cannot cancel this PaymentIntent because it has a status of "
            f"{payment_intent.status}. Only a PaymentIntent with one of the following "
            f"statuses may be canceled: {', '.join(_CANCELABLE)}.",
            code="payment_intent_unexpected_state",
        )
    PaymentIntent._api_cancel(payment_intent.id)
    payment_intent.canceled_at = int(time.time())
    payment_intent.cancellation_reason = reason
    emit("payment_intent.canceled", payment_intent)


def _payment_intent_options(params: dict[str, Any]) -> dict[str, Any]:
    """Pop and check the creation parameters localstripe does not know."""
    options: dict[str, Any] = {}
    if "description" in params:
        options["description"] = str(params.pop("description"))
    if "setup_future_usage" in params:
        usage = params.pop("setup_future_usage")
        if usage not in ("on_session", "off_session"):
            raise StripeApiError(
                400, f"Invalid setup_future_usage: {usage}", param="setup_future_usage"
            )
        options["setup_future_usage"] = usage
    if "automatic_payment_methods" in params:
        raw = as_dict(params.pop("automatic_payment_methods"), "automatic_payment_methods")
        reject_unknown(raw, ("enabled", "allow_redirects"), "automatic_payment_methods")
        enabled = as_bool(
            require(raw, "enabled", "automatic_payment_methods[enabled]"),
            "automatic_payment_methods[enabled]",
        )
        redirects = raw.get("allow_redirects", "always")
        if redirects not in ("always", "never"):
            param = "automatic_payment_methods[allow_redirects]"
            raise StripeApiError(400, f"Invalid {param}: {redirects}", param=param)
        options["automatic_payment_methods"] = {"enabled": enabled, "allow_redirects": redirects}
    if "payment_method_types" in params:
        if options.get("automatic_payment_methods", {}).get("enabled"):
            raise StripeApiError(
                400,
                "You may only specify one of these parameters: "
                "automatic_payment_methods, payment_method_types.",
                param="payment_method_types",
            )
        types = as_str_list(params.pop("payment_method_types"), "payment_method_types")
        options["payment_method_types"] = types
    return options


def _check_amount(params: dict[str, Any]) -> None:
    """Stripe's amount rules: a positive integer, at least the currency's minimum charge."""
    amount = as_int(require(params, "amount"), "amount", 1)
    currency = str(require(params, "currency")).lower()
    smallest = minimum_charge(currency)
    if amount < smallest:
        raise StripeApiError(
            400,
            f"Amount must be at least {display(smallest, currency)} {currency}",
            code="amount_too_small",
            param="amount",
            doc_url="https://stripe.com/docs/error-codes/amount-too-small",
        )
    params["amount"], params["currency"] = amount, currency


def _off_session(value: Any) -> bool:
    # Stripe also accepts the reasons "one_off" and "recurring" for off_session.
    return value in ("one_off", "recurring") or as_bool(value, "off_session")


async def create_payment_intent(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    confirm = as_bool(params.pop("confirm", False), "confirm")
    fail_on_action = _off_session(params.pop("off_session", False))
    fail_on_action |= as_bool(
        params.pop("error_on_requires_action", False), "error_on_requires_action"
    )
    if fail_on_action and not confirm:
        raise StripeApiError(
            400,
            "off_session and error_on_requires_action can only be used with confirm=true.",
            param="confirm",
        )
    if "return_url" in params:
        as_url(params.pop("return_url"), "return_url")
    options = _payment_intent_options(params)
    _check_amount(params)
    payment_intent = PaymentIntent._api_create(**params)
    vars(payment_intent).update(options)
    emit("payment_intent.created", payment_intent)
    if confirm:
        confirm_payment_intent(payment_intent, fail_on_action=fail_on_action)
    return json_response(payment_intent._export(expand=expand))


async def confirm(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(
        params, ("payment_method", "off_session", "error_on_requires_action", "return_url")
    )
    payment_intent = PaymentIntent._api_retrieve(request.match_info["id"])
    if payment_intent.status not in ("requires_payment_method", "requires_confirmation"):
        raise StripeApiError(
            400,
            "You cannot confirm this PaymentIntent because it has a status of "
            f"{payment_intent.status}.",
            code="payment_intent_unexpected_state",
        )
    if "return_url" in params:
        as_url(params["return_url"], "return_url")
    if "payment_method" in params:
        payment_intent.payment_method = PaymentMethod._api_retrieve(params["payment_method"]).id
    # A new attempt: forget the charge that failed, as localstripe keys status off it.
    payment_intent.latest_charge = None
    fail_on_action = _off_session(params.get("off_session", False)) or as_bool(
        params.get("error_on_requires_action", False), "error_on_requires_action"
    )
    confirm_payment_intent(payment_intent, fail_on_action=fail_on_action)
    return json_response(payment_intent._export(expand=expand))


async def cancel(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("cancellation_reason",))
    reason = params.get("cancellation_reason")
    if reason is not None and reason not in _CANCELLATION_REASONS:
        raise StripeApiError(
            400, f"Invalid cancellation_reason: {reason}", param="cancellation_reason"
        )
    payment_intent = PaymentIntent._api_retrieve(request.match_info["id"])
    cancel_payment_intent(payment_intent, reason)
    return json_response(payment_intent._export(expand=expand))


async def capture(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("amount_to_capture",))
    payment_intent = PaymentIntent._api_retrieve(request.match_info["id"])
    if payment_intent.status != "requires_capture":
        raise StripeApiError(
            400,
            "This PaymentIntent could not be captured because it has a status of "
            f"{payment_intent.status}. Only a PaymentIntent with one of the following "
            "statuses may be captured: requires_capture.",
            code="payment_intent_unexpected_state",
        )
    amount = as_int(params.get("amount_to_capture", payment_intent.amount), "amount_to_capture")
    if amount > payment_intent.amount:
        raise StripeApiError(
            400,
            "The amount to capture must be less than or equal to the amount authorized.",
            code="amount_too_large",
            param="amount_to_capture",
        )
    # Recorded first: capturing emits events that show these amounts.
    payment_intent._emu_amount_received = amount
    payment_intent.latest_charge._emu_amount_captured = amount
    PaymentIntent._api_capture(payment_intent.id, amount_to_capture=amount)
    return json_response(payment_intent._export(expand=expand))


async def list_payment_intents(request: web.Request) -> web.Response:
    """The account's PaymentIntents, newest first, optionally only a customer's."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("customer", "limit", "starting_after"))
    customer = params.pop("customer", None)
    listing = newest_first(
        all_of(PaymentIntent, "/v1/payment_intents", params),
        keep=lambda pi: customer in (None, pi.customer),
    )
    return json_response(listing._export(expand=expand))


async def create_payment_method(request: web.Request) -> web.Response:
    """localstripe's create, except a malformed card gets Stripe's ``card_error`` naming
    the field (localstripe answers a bare "Bad request")."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    card = params.get("card")
    if params.get("type") == "card" and isinstance(card, dict):
        for field, pattern, code, message in _CARD_CHECKS:
            if not re.fullmatch(pattern, str(card.get(field, ""))):
                raise StripeApiError(
                    402, message, type="card_error", code=code, param=f"card[{field}]"
                )
    return json_response(PaymentMethod._api_create(**params)._export(expand=expand))


async def attach(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("customer",))
    customer_id = require(params, "customer")
    payment_method = PaymentMethod._api_retrieve(request.match_info["id"])
    if payment_method.customer not in (None, customer_id):
        raise StripeApiError(
            400, "The payment method you provided has already been attached to a customer."
        )
    attach_payment_method(payment_method, customer_id)
    return json_response(payment_method._export(expand=expand))


async def detach(request: web.Request) -> web.Response:
    """Detach, emit ``payment_method.detached`` and, like Stripe, drop it as the default."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ())
    payment_method = PaymentMethod._api_retrieve(request.match_info["id"])
    customer_id = payment_method.customer
    if customer_id is None:
        raise StripeApiError(
            400,
            "The payment method you provided is not attached to a customer so detachment "
            "is impossible.",
        )
    PaymentMethod._api_detach(payment_method.id)
    emit("payment_method.detached", payment_method, {"customer": customer_id})
    customer = store.get(Customer.object + ":" + customer_id)
    if customer is not None:
        settings = customer.invoice_settings
        if settings.get("default_payment_method") == payment_method.id:
            Customer._api_update(
                customer_id, invoice_settings={**settings, "default_payment_method": None}
            )
    return json_response(payment_method._export(expand=expand))


def _tombstone(customer_id: str) -> str:
    return "deleted:" + Customer.object + ":" + customer_id


async def retrieve_customer(request: web.Request) -> web.Response:
    """A deleted customer still answers a retrieve, as in Stripe: ``{"id": ...,
    "object": "customer", "deleted": true}``; everywhere else it is "No such customer"."""
    params = await read_params(request)
    customer_id = request.match_info["id"]
    tombstone = store.get(_tombstone(customer_id))
    if tombstone is not None:
        return json_response(tombstone._export())
    return json_response(Customer._api_retrieve(customer_id)._export(expand=params.get("expand")))


async def delete_customer(request: web.Request) -> web.Response:
    deleted = Customer._api_delete(request.match_info["id"])
    store[_tombstone(deleted.id)] = deleted
    return json_response(deleted._export())


async def update_customer(request: web.Request) -> web.Response:
    """localstripe's update, except ``invoice_settings`` merges (it replaced the whole hash)
    and a default payment method must be attached to the customer, as Stripe insists."""
    customer_id = request.match_info["id"]
    params = await read_params(request)
    expand = params.pop("expand", None)
    customer = Customer._api_retrieve(customer_id)
    if "invoice_settings" in params:
        settings = as_dict(params["invoice_settings"], "invoice_settings")
        default = settings.get("default_payment_method")
        if default:
            payment_method = store.get(PaymentMethod.object + ":" + default)
            if payment_method is None:
                raise MissingObject(
                    PaymentMethod.object, default, "invoice_settings[default_payment_method]"
                )
            if payment_method.customer != customer_id:
                raise StripeApiError(
                    400,
                    f"The customer does not have a payment method with the ID {default}. "
                    "The payment method must be attached to the customer.",
                    code="resource_missing",
                    param="invoice_settings[default_payment_method]",
                )
        params["invoice_settings"] = {**customer.invoice_settings, **settings}
    if params:
        customer = Customer._api_update(customer_id, **params)
    return json_response(customer._export(expand=expand))


async def list_payment_methods(request: web.Request) -> web.Response:
    """``GET /v1/payment_methods``: the account's payment methods, newest first, filtered
    by ``customer`` and ``type`` (both optional, as in Stripe's current API)."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("customer", "type", "limit", "starting_after"))
    customer, kind = params.pop("customer", None), params.pop("type", None)
    if customer is not None and store.get(Customer.object + ":" + str(customer)) is None:
        raise MissingObject("customer", str(customer), param="customer")
    listing = newest_first(
        all_of(PaymentMethod, "/v1/payment_methods", params),
        keep=lambda pm: customer in (None, pm.customer) and kind in (None, pm.type),
    )
    return json_response(listing._export(expand=expand))


async def list_customer_payment_methods(request: web.Request) -> web.Response:
    """``GET /v1/customers/{id}/payment_methods``, newest first; ``type`` is optional."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("type", "limit", "starting_after"))
    customer_id = request.match_info["id"]
    Customer._api_retrieve(customer_id)
    kind = params.get("type")
    listing = newest_first(
        all_of(PaymentMethod, f"/v1/customers/{customer_id}/payment_methods", params),
        keep=lambda pm: pm.customer == customer_id and kind in (None, pm.type),
    )
    return json_response(listing._export(expand=expand))


async def retrieve_customer_payment_method(request: web.Request) -> web.Response:
    params = await read_params(request)
    customer_id = request.match_info["id"]
    payment_method_id = request.match_info["payment_method"]
    Customer._api_retrieve(customer_id)
    payment_method = store.get(PaymentMethod.object + ":" + payment_method_id)
    if payment_method is None or payment_method.customer != customer_id:
        raise MissingObject("payment_method", payment_method_id)
    return json_response(payment_method._export(expand=params.get("expand")))


ROUTES: Routes = [
    ("POST", "/v1/payment_intents", create_payment_intent),
    ("GET", "/v1/payment_intents", list_payment_intents),
    ("POST", "/v1/payment_intents/{id}/confirm", confirm),
    ("POST", "/v1/payment_intents/{id}/cancel", cancel),
    ("POST", "/v1/payment_intents/{id}/capture", capture),
    ("POST", "/v1/payment_methods", create_payment_method),
    ("GET", "/v1/payment_methods", list_payment_methods),
    ("POST", "/v1/payment_methods/{id}/attach", attach),
    ("POST", "/v1/payment_methods/{id}/detach", detach),
    ("GET", "/v1/customers/{id}", retrieve_customer),
    ("POST", "/v1/customers/{id}", update_customer),
    ("DELETE", "/v1/customers/{id}", delete_customer),
    ("GET", "/v1/customers/{id}/payment_methods", list_customer_payment_methods),
    (
        "GET",
        "/v1/customers/{id}/payment_methods/{payment_method}",
        retrieve_customer_payment_method,
    ),
]
