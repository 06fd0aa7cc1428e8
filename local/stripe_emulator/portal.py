"""Stripe's Billing Portal: configurations, sessions, and the hosted page a customer uses.

Configurations and sessions have Stripe's shapes and rules: an account's first
configuration is its default (one with Stripe's defaults is made if a session needs
one and none exists), and a session needs a ``return_url`` unless its configuration has
a default one. A session's page lives five minutes unless opened, then an hour.

The page (plain HTML forms, no JavaScript) shows what the configuration enables: the
customer's invoices, their default card and a form to add one (a SetupIntent, the card
attached and made the default of the customer and of the subscriptions that had one),
and the customer details it lets them edit. Each change emits the events Stripe emits;
a save that changes nothing emits none. Cancelling, pausing, switching plans and
quantities are not modelled: Billow's configuration turns them off.
"""

from __future__ import annotations

import re
import time
from html import escape
from typing import Any

from aiohttp import web
from localstripe.resources import (
    Customer,
    PaymentMethod,
    SetupIntent,
    StripeObject,
    random_id,
    store,
)

from .billing import SubscriptionInvoice
from .checkout_page import TEST_CARDS, _page
from .common import (
    Routes,
    all_of,
    as_bool,
    as_dict,
    as_str_list,
    as_url,
    find,
    newest_first,
    read_params,
    reject_unknown,
    updated_metadata,
)
from .context import acting_as, current
from .errors import StripeApiError, json_response
from .events import emit
from .money import page_amount
from .payments import attach_payment_method, create_card_payment_method, decline_details
from .subscriptions import CatalogSubscription

CUSTOMER_FIELDS = ("email", "address", "shipping", "phone", "tax_id", "name")
_ADDRESS = ("line1", "line2", "city", "postal_code", "state", "country")
_UNOPENED_S, _OPENED_S = 5 * 60, 60 * 60
_FEATURES = (
    "customer_update",
    "invoice_history",
    "payment_method_update",
    "subscription_cancel",
    "subscription_update",
)


def _features(given: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stripe's full ``features`` object: what ``given`` sets over ``current`` (or
    Stripe's defaults), checked as Stripe checks it."""
    reject_unknown(given, _FEATURES, "features")
    base = current or {
        "customer_update": {"allowed_updates": [], "enabled": False},
        "invoice_history": {"enabled": False},
        "payment_method_update": {"enabled": False, "payment_method_configuration": None},
        "subscription_cancel": {
            "cancellation_reason": {"enabled": False, "options": []},
            "enabled": False,
            "mode": "at_period_end",
            "proration_behavior": "none",
        },
        "subscription_update": {
            "default_allowed_updates": [],
            "enabled": False,
            "proration_behavior": "none",
            "schedule_at_period_end": {"conditions": []},
            "trial_update_behavior": "end_trial",
            "billing_cycle_anchor": None,
        },
    }
    features = {name: dict(value) for name, value in base.items()}
    for name, raw in given.items():
        where = f"features[{name}]"
        value = as_dict(raw, where)
        allowed = {"enabled", *(["allowed_updates"] if name == "customer_update" else [])}
        reject_unknown(value, allowed, where)
        if "enabled" in value:
            features[name]["enabled"] = as_bool(value["enabled"], f"{where}[enabled]")
        if "allowed_updates" in value:
            updates = as_str_list(value["allowed_updates"] or [], f"{where}[allowed_updates]")
            for index, update in enumerate(updates):
                if update not in CUSTOMER_FIELDS:
                    param = f"{where}[allowed_updates][{index}]"
                    raise StripeApiError(
                        400,
                        f"Invalid {param}: must be one of {', '.join(CUSTOMER_FIELDS)}",
                        param=param,
                    )
            features[name]["allowed_updates"] = updates
    return features


class PortalConfiguration(StripeObject):
    object = "billing_portal.configuration"
    _id_prefix = "bpc_"

    def __init__(self, params: dict[str, Any], is_default: bool) -> None:
        super().__init__(id=self._id_prefix + random_id(24))
        now = int(time.time())
        self.active = True
        self.application = None
        self.business_profile = {
            "headline": None,
            "privacy_policy_url": None,
            "terms_of_service_url": None,
        }
        self.created = self.updated = now
        self.default_return_url: str | None = None
        self.features = _features({})
        self.is_default = is_default
        self.login_page: dict[str, Any] = {"enabled": False, "url": None}
        self.metadata: dict[str, str] = {}
        self.name: str | None = None
        self._apply(params)

    def _apply(self, params: dict[str, Any]) -> None:
        if "features" in params:
            self.features = _features(as_dict(params["features"], "features"), self.features)
        if "business_profile" in params:
            profile = as_dict(params["business_profile"], "business_profile")
            reject_unknown(profile, tuple(self.business_profile), "business_profile")
            self.business_profile = {**self.business_profile, **profile}
        if "default_return_url" in params:
            url = params["default_return_url"]
            self.default_return_url = as_url(url, "default_return_url") if url else None
        if "login_page" in params:
            login = as_dict(params["login_page"], "login_page")
            reject_unknown(login, ("enabled",), "login_page")
            enabled = as_bool(login.get("enabled", False), "login_page[enabled]")
            self.login_page = {
                "enabled": enabled,
                "url": f"{current().base_url}/portal/login/{self.id.removeprefix('bpc_')}"
                if enabled
                else None,
            }
        if "metadata" in params:
            self.metadata = updated_metadata(self.metadata, params["metadata"])
        if "active" in params:
            self.active = as_bool(params["active"], "active")
        if "name" in params:
            self.name = str(params["name"]) if params["name"] else None
        self.updated = int(time.time())


_CONFIGURATION_PARAMS = (
    "business_profile",
    "default_return_url",
    "features",
    "login_page",
    "metadata",
    "name",
)


def _configurations() -> list[PortalConfiguration]:
    return [obj for obj in store.values() if isinstance(obj, PortalConfiguration)]


async def create_configuration(request: web.Request) -> web.Response:
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, _CONFIGURATION_PARAMS)
    if "features" not in params:
        raise StripeApiError(400, "Missing required param: features.", param="features")
    is_default = not _configurations()
    return json_response(PortalConfiguration(params, is_default)._export())


async def retrieve_configuration(request: web.Request) -> web.Response:
    return json_response(find(PortalConfiguration, request.match_info["id"])._export())


async def update_configuration(request: web.Request) -> web.Response:
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, (*_CONFIGURATION_PARAMS, "active"))
    configuration = find(PortalConfiguration, request.match_info["id"])
    configuration._apply(params)
    return json_response(configuration._export())


async def list_configurations(request: web.Request) -> web.Response:
    params = await read_params(request)
    filters = {name: params.pop(name) for name in ("active", "is_default") if name in params}
    reject_unknown(params, ("limit", "starting_after"))
    listing = newest_first(
        all_of(PortalConfiguration, "/v1/billing_portal/configurations", params),
        keep=lambda obj: all(
            getattr(obj, name) == as_bool(value, name) for name, value in filters.items()
        ),
    )
    return json_response(listing._export())


class PortalSession(StripeObject):
    object = "billing_portal.session"
    _id_prefix = "bps_"

    def __init__(self, customer: str, configuration: PortalConfiguration, return_url: str) -> None:
        super().__init__(id=self._id_prefix + random_id(24))
        self.configuration = configuration.id
        self.created = int(time.time())
        self.customer = customer
        self.customer_account = None
        self.flow = None
        self.locale = None
        self.on_behalf_of = None
        self.return_url = return_url
        self.url = f"{current().base_url}/portal/{self.id}"
        self._expires_at = self.created + _UNOPENED_S


def _default_configuration() -> PortalConfiguration:
    """The account's default, made with Stripe's defaults if it has none."""
    default = next((c for c in _configurations() if c.is_default), None)
    if default is not None:
        return default
    return PortalConfiguration(
        {
            "features": {
                "customer_update": {
                    "enabled": True,
                    "allowed_updates": ["email", "address", "phone", "tax_id"],
                },
                "invoice_history": {"enabled": True},
                "payment_method_update": {"enabled": True},
            }
        },
        is_default=True,
    )


async def create_session(request: web.Request) -> web.Response:
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, ("customer", "configuration", "return_url", "locale", "flow_data"))
    if "flow_data" in params:
        raise StripeApiError(
            400, "Billow's emulator does not model portal flows.", param="flow_data"
        )
    if not params.get("customer"):
        raise StripeApiError(400, "Missing required param: customer.", param="customer")
    customer = find(Customer, params["customer"], "customer")
    configuration = (
        find(PortalConfiguration, params["configuration"], "configuration")
        if params.get("configuration")
        else _default_configuration()
    )
    if not configuration.active:
        raise StripeApiError(400, "The configuration specified is inactive.", param="configuration")
    url = params.get("return_url")
    return_url = as_url(url, "return_url") if url else configuration.default_return_url
    if return_url is None:
        raise StripeApiError(
            400,
            "You must provide a return_url, or set a default_return_url on the configuration.",
            param="return_url",
        )
    session = PortalSession(customer.id, configuration, return_url)
    return json_response(session._export())


# -- the hosted page -------------------------------------------------------------------


class _Gone(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _open(session_id: str) -> tuple[PortalSession, PortalConfiguration, Any]:
    session = store.get(f"{PortalSession.object}:{session_id}")
    if not isinstance(session, PortalSession):
        raise _Gone(404, f"No such portal session: {session_id}")
    now = int(time.time())
    if now >= session._expires_at:
        raise _Gone(410, "This portal session has expired.")
    session._expires_at = max(session._expires_at, now + _OPENED_S)
    configuration = find(PortalConfiguration, session.configuration)
    return session, configuration, Customer._api_retrieve(session.customer)


def _invoices(customer_id: str) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(invoice.number or invoice.id))}</td>"
        f"<td>{time.strftime('%Y-%m-%d', time.gmtime(invoice.created))}</td>"
        f"<td>{page_amount(invoice.total, invoice.currency)}</td>"
        f"<td>{escape(invoice.status)}</td>"
        f'<td><a href="{escape(invoice.hosted_invoice_url)}">View</a></td></tr>'
        for invoice in sorted(
            (
                obj
                for obj in store.values()
                if isinstance(obj, SubscriptionInvoice) and obj.customer == customer_id
            ),
            key=lambda invoice: -invoice.created,
        )
    )
    return (
        '<h2>Invoice history</h2><table id="invoices"><tr><th>Number</th><th>Date</th>'
        f"<th>Amount</th><th>Status</th><th></th></tr>{rows}</table>"
        if rows
        else "<h2>Invoice history</h2><p>No invoices yet.</p>"
    )


def _card_forms(session: PortalSession, customer: Any) -> str:
    chosen = (customer.invoice_settings or {}).get("default_payment_method")
    method = store.get(f"{PaymentMethod.object}:{chosen}") if chosen else None
    shown = (
        f"{escape(str(method.card['brand']).title())} ending {escape(method.card['last4'])}"
        if method is not None
        else "none"
    )
    cards = "".join(
        f'<label><input type="radio" name="card" value="{number}"'
        f"{' checked' if index == 0 else ''}> {escape(label)}</label>"
        for index, (number, label) in enumerate(TEST_CARDS)
        if not number.startswith("40000027")  # 3-D Secure is not modelled here
    )
    return (
        f'<h2>Payment method</h2><p id="default-card">Default: {shown}</p>'
        f'<form method="post" action="/portal/{escape(session.id)}/payment_method">'
        f"<fieldset><legend>Add a card</legend>{cards}</fieldset>"
        '<p><button type="submit">Add card</button></p></form>'
    )


def _details_form(session: PortalSession, customer: Any, allowed: list[str]) -> str:
    fields = []
    if "address" in allowed:
        address = customer.address or {}
        fields += [
            f'<label>Address {name} <input type="text" name="address_{name}" '
            f'id="address_{name}" value="{escape(str(address.get(name) or ""))}"></label>'
            for name in _ADDRESS
        ]
    if "phone" in allowed:
        fields.append(
            '<label>Phone <input type="text" name="phone" id="phone" '
            f'value="{escape(str(customer.phone or ""))}"></label>'
        )
    if not fields:
        return ""
    return (
        f'<h2>Billing details</h2><form method="post" action="/portal/{escape(session.id)}'
        f'/customer">{"".join(fields)}<p><button type="submit">Save</button></p></form>'
    )


def _portal_page(
    session: PortalSession,
    configuration: PortalConfiguration,
    customer: Any,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    features = configuration.features
    parts = [f"<p>{escape(str(customer.name or customer.email or customer.id))}</p>"]
    if error:
        parts.append(f'<p class="error">{escape(error)}</p>')
    if features["customer_update"]["enabled"]:
        parts.append(
            _details_form(session, customer, features["customer_update"]["allowed_updates"])
        )
    if features["payment_method_update"]["enabled"]:
        parts.append(_card_forms(session, customer))
    if features["invoice_history"]["enabled"]:
        parts.append(_invoices(customer.id))
    parts.append(f'<p><a id="return" href="{escape(session.return_url)}">Return</a></p>')
    return _page("Billing", "".join(parts), status)


def _portal(handler: Any) -> Any:
    """A page of one live session, served as the account that made it."""

    async def page(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        try:
            with acting_as(store.owner(f"{PortalSession.object}:{session_id}")):
                return await handler(request, *_open(session_id))
        except _Gone as gone:
            return _page("Portal unavailable", f"<p>{escape(str(gone))}</p>", gone.status)

    return page


@_portal
async def show(
    request: web.Request, session: PortalSession, configuration: PortalConfiguration, customer: Any
) -> web.StreamResponse:
    return _portal_page(session, configuration, customer)


def _back(session: PortalSession) -> web.Response:
    return web.Response(status=303, headers={"Location": f"/portal/{session.id}"})


@_portal
async def add_card(
    request: web.Request, session: PortalSession, configuration: PortalConfiguration, customer: Any
) -> web.StreamResponse:
    """Stripe's portal saves a card through a SetupIntent and makes it the default of the
    customer and of the subscriptions that named their own."""
    if not configuration.features["payment_method_update"]["enabled"]:
        return _portal_page(session, configuration, customer, "Not allowed here.", 403)
    number = str((await request.post()).get("card", ""))
    if not re.fullmatch(r"\d{16}", number):
        return _portal_page(session, configuration, customer, "Choose a test card.", 400)
    method = create_card_payment_method(number)
    setup_intent = SetupIntent(customer=customer.id, usage="off_session")
    emit("setup_intent.created", setup_intent)
    setup_intent.payment_method = method.id
    if method._attaching_is_declined():
        error = decline_details(method)
        setup_intent.status = "requires_payment_method"
        setup_intent.payment_method = None
        setup_intent.last_setup_error = error
        emit("setup_intent.setup_failed", setup_intent)
        return _portal_page(session, configuration, customer, error["message"], 402)
    attach_payment_method(method, customer.id)
    setup_intent.status = "succeeded"
    emit("setup_intent.succeeded", setup_intent)
    previous = dict(customer.invoice_settings or {})
    customer.invoice_settings = {**previous, "default_payment_method": method.id}
    emit("customer.updated", customer, {"invoice_settings": previous})
    for sub in list(store.values()):
        if (
            isinstance(sub, CatalogSubscription)
            and sub.customer == customer.id
            and sub.status != "canceled"
            and sub.default_payment_method not in (None, method.id)
        ):
            before = sub.default_payment_method
            sub.default_payment_method = method.id
            emit("customer.subscription.updated", sub, {"default_payment_method": before})
    return _back(session)


@_portal
async def update_customer(
    request: web.Request, session: PortalSession, configuration: PortalConfiguration, customer: Any
) -> web.StreamResponse:
    update = configuration.features["customer_update"]
    allowed = update["allowed_updates"] if update["enabled"] else []
    form = await request.post()
    previous: dict[str, Any] = {}
    if "address" in allowed:
        address = {name: str(form.get(f"address_{name}", "")).strip() or None for name in _ADDRESS}
        if address["country"]:
            address["country"] = str(address["country"]).upper()
        if not address["line1"] or not address["country"] or len(str(address["country"])) != 2:
            return _portal_page(
                session, configuration, customer, "Enter an address with a two-letter country.", 400
            )
        if address != (customer.address or None):
            previous["address"] = customer.address
            customer.address = address
    if "phone" in allowed:
        phone = str(form.get("phone", "")).strip() or None
        if phone != customer.phone:
            previous["phone"] = customer.phone
            customer.phone = phone
    if previous:
        emit("customer.updated", customer, previous)
    return _back(session)


ROUTES: Routes = [
    ("POST", "/v1/billing_portal/configurations", create_configuration),
    ("GET", "/v1/billing_portal/configurations", list_configurations),
    ("GET", "/v1/billing_portal/configurations/{id}", retrieve_configuration),
    ("POST", "/v1/billing_portal/configurations/{id}", update_configuration),
    ("POST", "/v1/billing_portal/sessions", create_session),
    ("GET", "/portal/{id}", show),
    ("POST", "/portal/{id}/payment_method", add_card),
    ("POST", "/portal/{id}/customer", update_customer),
]
