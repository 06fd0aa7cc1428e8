"""The hosted checkout page: where a developer plays the customer.

Plain HTML forms (no JavaScript): pick one of Stripe's test cards, confirm, and,
for the 3-D Secure card, pass or fail the challenge. The objects and events are the
ones Stripe Checkout produces, in the account that created the session.

A ``subscription`` session shows its Price and the fields the session asks for (a
promotion code, a billing address, a phone number, a tax id). Confirming subscribes
the customer and pays the first invoice, as Stripe does. A card that would be declined
is refused on the page and nothing is created (Stripe keeps an ``incomplete``
subscription the customer never sees); the 3-D Secure card is not offered there, as
the emulator does not model an authenticated first payment of a subscription.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    PaymentIntent,
    PaymentMethod,
    SetupIntent,
    store,
)

from .catalog import CatalogPrice
from .checkout import CheckoutSession, Collected, find_session
from .common import Handler, Routes, find
from .context import acting_as
from .errors import StripeApiError
from .events import emit
from .money import page_amount
from .payments import (
    DECLINES,
    attach_payment_method,
    authenticate_payment_intent,
    confirm_payment_intent,
    create_card_payment_method,
    decline_details,
)
from .promotions import find_redeemable
from .subscriptions import subscribe
from .tax import customer_address, is_locatable

TEST_CARDS = (
    ("4242424242424242", "Visa ending 4242: succeeds"),
    ("4000000000000341", "Visa ending 0341: saves fine, declined when charged"),
    ("4000002760003184", "Visa ending 3184: requires 3-D Secure authentication"),
    ("4000000000009995", "Visa ending 9995: declined, insufficient funds"),
)
_AUTHENTICATION_FAILED = (
    "The latest attempt to set up the payment method has failed because authentication failed."
)
_TRY_AGAIN = "Authentication failed. Try again or use another card."


_SessionHandler = Callable[[web.Request, CheckoutSession], Awaitable[web.StreamResponse]]


class _PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 34rem; margin: 3rem auto; line-height: 1.5 }}
.error {{ color: #b00020 }}
label {{ display: block; margin: .4rem 0 }}
</style>
</head>
<body>
<p><small>Billow local checkout &middot; Stripe test mode</small></p>
<h1>{escape(title)}</h1>
{body}
</body>
</html>
"""
    return web.Response(status=status, text=html, content_type="text/html")


def _session_page(handler: _SessionHandler) -> Handler:
    """A page of one open session, served as the account that created the session (a
    browser brings no API key, so nothing else says whose objects these are), with
    failures answered as an HTML page: the client here is a browser, not the SDK."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        try:
            with acting_as(store.owner(CheckoutSession.object + ":" + session_id)):
                return await handler(request, _open_session(session_id))
        except _PageError as exc:
            return _page("Checkout unavailable", f"<p>{escape(exc.message)}</p>", exc.status)
        except UserError as exc:
            message = exc.body["error"].get("message", "Request failed")
            return _page("Checkout failed", f"<p>{escape(message)}</p>", exc.code)

    return page


def _open_session(session_id: str) -> CheckoutSession:
    session = find_session(session_id)
    if session is None:
        raise _PageError(404, f"No such checkout session: {session_id}")
    if session.status == "complete":
        raise _PageError(409, "This checkout session is already complete.")
    if session.status == "expired":
        raise _PageError(410, "This checkout session has expired.")
    return session


def _awaiting_authentication(session: CheckoutSession) -> Any | None:
    intent_id = session.setup_intent or session.payment_intent
    if intent_id is None:
        return None
    cls = SetupIntent if session.mode == "setup" else PaymentIntent
    intent = cls._api_retrieve(intent_id)
    return intent if intent.status == "requires_action" else None


_THREE_D_SECURE = "4000002760003184"
_ADDRESS_FIELDS = (
    ("line1", "Address line 1"),
    ("line2", "Address line 2"),
    ("city", "City"),
    ("postal_code", "Postal code"),
    ("state", "State"),
    ("country", "Country (two letters)"),
)
_TAX_ID_TYPES = ("eu_vat", "gb_vat", "us_ein")


def _input(name: str, label: str, required: bool = False) -> str:
    star = " *" if required else ""
    flag = " required" if required else ""
    return (
        f'<label>{escape(label)}{star} <input type="text" name="{name}" id="{name}"{flag}></label>'
    )


def _price_summary(session: CheckoutSession) -> str:
    item = session._line_items[0]
    price = find(CatalogPrice, item["price"])
    recurring = price.recurring
    every = (
        recurring["interval"]
        if recurring["interval_count"] == 1
        else f"{recurring['interval_count']} {recurring['interval']}s"
    )
    amount = page_amount(item["unit_amount"], item["currency"])
    return f"<p>{escape(str(item['description']))}: {amount} per {escape(every)}</p>"


def _needs_address(session: CheckoutSession) -> bool:
    """Asked for: always with ``billing_address_collection=required``, and for automatic
    tax when the customer has no address to tax (Stripe then collects it)."""
    if session.billing_address_collection == "required":
        return True
    return bool(session.automatic_tax["enabled"]) and not is_locatable(
        customer_address(session.customer)
    )


def _subscription_fields(session: CheckoutSession) -> str:
    fields = []
    if session.allow_promotion_codes:
        fields.append(_input("promotion_code", "Promotion code"))
    if _needs_address(session):
        fields.append(
            "<fieldset><legend>Billing address</legend>"
            + "".join(
                _input(f"address_{name}", label, name in ("line1", "country"))
                for name, label in _ADDRESS_FIELDS
            )
            + "</fieldset>"
        )
    if session.phone_number_collection["enabled"]:
        fields.append(_input("phone", "Phone number", required=True))
    if session.tax_id_collection["enabled"]:
        options = "".join(f'<option value="{kind}">{kind}</option>' for kind in _TAX_ID_TYPES)
        fields.append(
            "<fieldset><legend>Tax id (optional)</legend>"
            f'<label>Type <select name="tax_id_type" id="tax_id_type">{options}</select></label>'
            + _input("tax_id_value", "Number")
            + "</fieldset>"
        )
    return "".join(fields)


def _form_page(
    session: CheckoutSession, error: str | None = None, status: int = 200
) -> web.Response:
    offered: tuple[tuple[str, str], ...] = TEST_CARDS
    extra = ""
    if session.mode == "payment":
        title = "Pay " + page_amount(session.amount_total or 0, session.currency)
        items = "".join(
            f"<li>{escape(str(item['description']))} &times; {item['quantity']}: "
            f"{page_amount(item['amount_total'], item['currency'])}</li>"
            for item in session._line_items
        )
        summary = f"<ul>{items}</ul>"
    elif session.mode == "subscription":
        title = "Subscribe"
        summary = _price_summary(session)
        offered = tuple(card for card in TEST_CARDS if card[0] != _THREE_D_SECURE)
        extra = _subscription_fields(session)
    else:
        title = "Save a card"
        summary = "<p>Save a card for future payments. Nothing is charged now.</p>"
    cards = "".join(
        f'<label><input type="radio" name="card" value="{number}"'
        f"{' checked' if index == 0 else ''}> {escape(label)}</label>"
        for index, (number, label) in enumerate(offered)
    )
    banner = f'<p class="error">{escape(error)}</p>' if error else ""
    cancel = (
        f'<p><a href="{escape(session.cancel_url)}">Cancel</a></p>' if session.cancel_url else ""
    )
    form = (
        f'<form method="post" action="/checkout/{escape(session.id)}">'
        f"{extra}<fieldset><legend>Test card</legend>{cards}</fieldset>"
        '<p><button type="submit">Confirm</button></p></form>'
    )
    return _page(title, summary + banner + form + cancel, status)


def _authentication_page(session: CheckoutSession) -> web.Response:
    action = f"/checkout/{escape(session.id)}/authenticate"
    body = (
        "<p>Your bank asks you to confirm this with 3-D Secure (test).</p>"
        f'<form method="post" action="{action}">'
        '<button type="submit" name="outcome" value="success">Authenticate</button> '
        '<button type="submit" name="outcome" value="fail">Fail authentication</button>'
        "</form>"
    )
    return _page("Authenticate", body)


def _completed(session: CheckoutSession, collected: Collected | None = None) -> web.Response:
    session._complete(collected)
    if session.success_url:
        location = session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)
        return web.Response(status=303, headers={"Location": location})
    done = "Card saved" if session.mode == "setup" else "Payment complete"
    return _page(done, "<p>You can close this page.</p>")


def _customer_id(session: CheckoutSession) -> str:
    if session.customer is None:
        session.customer = Customer().id
    return str(Customer._api_retrieve(session.customer).id)


def _fail_setup(setup_intent: Any, error: dict[str, Any]) -> None:
    setup_intent.status = "requires_payment_method"
    setup_intent.payment_method = None
    setup_intent.next_action = None
    setup_intent.last_setup_error = error
    emit("setup_intent.setup_failed", setup_intent)


def _finish_setup(session: CheckoutSession, setup_intent: Any) -> web.Response:
    payment_method = PaymentMethod._api_retrieve(setup_intent.payment_method)
    attach_payment_method(payment_method, setup_intent.customer)
    setup_intent.status = "succeeded"
    setup_intent.next_action = None
    emit("setup_intent.succeeded", setup_intent)
    return _completed(session)


def _save_card(session: CheckoutSession, payment_method: Any) -> web.Response:
    if session.setup_intent:
        setup_intent = SetupIntent._api_retrieve(session.setup_intent)
    else:
        data = session._setup_intent_data
        setup_intent = SetupIntent(
            customer=_customer_id(session), usage="off_session", metadata=data.get("metadata")
        )
        setup_intent.description = data.get("description")
        session.setup_intent = setup_intent.id
        emit("setup_intent.created", setup_intent)
    setup_intent.payment_method = payment_method.id
    setup_intent.last_setup_error = None
    if payment_method._attaching_is_declined():
        error = decline_details(payment_method)
        _fail_setup(setup_intent, error)
        return _form_page(session, error["message"], 402)
    if payment_method._requires_authentication():
        setup_intent.status = "requires_action"
        setup_intent.next_action = {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": session.url, "return_url": session.success_url},
        }
        emit("setup_intent.requires_action", setup_intent)
        return _authentication_page(session)
    return _finish_setup(session, setup_intent)


def _pay(session: CheckoutSession, payment_method: Any) -> web.Response:
    if session.payment_intent:
        payment_intent = PaymentIntent._api_retrieve(session.payment_intent)
        payment_intent.latest_charge = None
        payment_intent.next_action = None
    else:
        data = session._payment_intent_data
        payment_intent = PaymentIntent(
            amount=session.amount_total,
            currency=session.currency,
            customer=_customer_id(session),
            metadata=data.get("metadata"),
        )
        payment_intent.description = data.get("description")
        payment_intent.setup_future_usage = data.get("setup_future_usage")
        payment_intent.payment_method_types = list(session.payment_method_types)
        session.payment_intent = payment_intent.id
        emit("payment_intent.created", payment_intent)
    payment_intent.payment_method = payment_method.id
    try:
        confirm_payment_intent(payment_intent, fail_on_action=False)
    except StripeApiError as exc:
        if exc.code != 402:
            raise
        return _form_page(session, exc.message, 402)
    if payment_intent.status == "requires_action":
        return _authentication_page(session)
    return _completed(session)


@_session_page
async def show(request: web.Request, session: CheckoutSession) -> web.StreamResponse:
    if _awaiting_authentication(session) is not None:
        return _authentication_page(session)
    return _form_page(session)


def _collected(session: CheckoutSession, form: Any) -> Collected:
    """The page's extra fields, checked as Stripe's page checks them."""

    def field(name: str) -> str | None:
        value = str(form.get(name, "")).strip()
        return value or None

    address = None
    if _needs_address(session):
        address = {name: field(f"address_{name}") for name, _ in _ADDRESS_FIELDS}
        if not address["line1"] or not address["country"] or len(address["country"]) != 2:
            raise _PageError(400, "Enter a billing address with a two-letter country.")
        address["country"] = str(address["country"]).upper()
        if session.automatic_tax["enabled"] and not is_locatable(address):
            raise _PageError(400, "We could not find where this address is taxed.")
    phone = field("phone") if session.phone_number_collection["enabled"] else None
    if session.phone_number_collection["enabled"] and not phone:
        raise _PageError(400, "Enter a phone number.")
    tax_id = None
    if session.tax_id_collection["enabled"] and field("tax_id_value"):
        kind = field("tax_id_type") or ""
        if kind not in _TAX_ID_TYPES:
            raise _PageError(400, "Choose a tax id type.")
        tax_id = {"type": kind, "value": str(field("tax_id_value"))}
    code = field("promotion_code") if session.allow_promotion_codes else None
    if code is not None and find_redeemable(code, session.customer) is None:
        raise _PageError(400, "This code is invalid.")
    return Collected(address=address, phone=phone, tax_id=tax_id, promotion_code=code)


def _keep_on_customer(session: CheckoutSession, collected: Collected) -> None:
    """What ``customer_update`` lets Checkout save on the customer: its address."""
    customer = Customer._api_retrieve(session.customer)
    if collected.address and session._customer_update.get("address") == "auto":
        previous = customer.address
        if previous != collected.address:
            customer.address = collected.address
            emit("customer.updated", customer, {"address": previous})


def _subscribe(session: CheckoutSession, payment_method: Any, collected: Collected) -> web.Response:
    """Stripe Checkout's subscription: the card attached, the subscription made on the
    session's Price with the card as its default, and its first invoice paid."""
    number = getattr(payment_method, "_card_number", "")
    if number in DECLINES:
        return _form_page(session, decline_details(payment_method)["message"], 402)
    customer_id = _customer_id(session)
    attach_payment_method(payment_method, customer_id)
    _keep_on_customer(session, collected)
    promotion = (
        find_redeemable(collected.promotion_code, customer_id) if collected.promotion_code else None
    )
    data = session._subscription_data
    subscription = subscribe(
        customer_id,
        find(CatalogPrice, session._line_items[0]["price"]),
        default_payment_method=payment_method.id,
        anchor=data.get("billing_cycle_anchor"),
        cancel_at=None,
        metadata=dict(data.get("metadata") or {}),
        automatic_tax=bool(session.automatic_tax["enabled"]),
        promotion_code=promotion,
    )
    invoice = store.get(f"invoice:{subscription.latest_invoice}")
    session.subscription = subscription.id
    session.invoice = invoice.id if invoice is not None else None
    if session.automatic_tax["enabled"]:
        session.automatic_tax["status"] = "complete"
    if invoice is not None:
        session.amount_subtotal = invoice.subtotal
        session.amount_total = invoice.total
        session.discounts = [{"coupon": None, "promotion_code": promotion.id}] if promotion else []
        session.total_details = {
            "amount_discount": sum(d["amount"] for d in invoice.total_discount_amounts),
            "amount_shipping": 0,
            "amount_tax": invoice.total - invoice.total_excluding_tax,
        }
    return _completed(session, collected)


@_session_page
async def submit(request: web.Request, session: CheckoutSession) -> web.StreamResponse:
    form = await request.post()
    number = str(form.get("card", ""))
    if not re.fullmatch(r"\d{16}", number):
        return _form_page(session, "Choose one of the test cards.", 400)
    if session.mode == "subscription":
        try:
            collected = _collected(session, form)
        except _PageError as invalid:
            return _form_page(session, invalid.message, invalid.status)
        if number == _THREE_D_SECURE:
            return _form_page(session, "Choose one of the test cards.", 400)
        return _subscribe(session, create_card_payment_method(number), collected)
    payment_method = create_card_payment_method(number)
    if session.mode == "setup":
        return _save_card(session, payment_method)
    return _pay(session, payment_method)


def _authenticate_setup(session: CheckoutSession, setup_intent: Any, passed: bool) -> web.Response:
    if passed:
        return _finish_setup(session, setup_intent)
    payment_method = PaymentMethod._api_retrieve(setup_intent.payment_method)
    error = {
        "type": "invalid_request_error",
        "code": "setup_intent_authentication_failure",
        "message": _AUTHENTICATION_FAILED,
        "payment_method": payment_method._export(),
    }
    _fail_setup(setup_intent, error)
    return _form_page(session, _TRY_AGAIN, 402)


def _authenticate_payment(
    session: CheckoutSession, payment_intent: Any, passed: bool
) -> web.Response:
    try:
        authenticate_payment_intent(payment_intent, success=passed)
    except StripeApiError as exc:
        if exc.code != 402:
            raise
        return _form_page(session, exc.message, 402)
    return _completed(session) if passed else _form_page(session, _TRY_AGAIN, 402)


@_session_page
async def authenticate(request: web.Request, session: CheckoutSession) -> web.StreamResponse:
    outcome = (await request.post()).get("outcome")
    if outcome not in ("success", "fail"):
        return _authentication_page(session)
    intent = _awaiting_authentication(session)
    if intent is None:
        raise _PageError(409, "Nothing is waiting for authentication on this checkout session.")
    if session.mode == "setup":
        return _authenticate_setup(session, intent, outcome == "success")
    return _authenticate_payment(session, intent, outcome == "success")


ROUTES: Routes = [
    ("GET", "/checkout/{id}", show),
    ("POST", "/checkout/{id}", submit),
    ("POST", "/checkout/{id}/authenticate", authenticate),
]
