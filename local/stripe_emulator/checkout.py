"""Checkout Sessions (missing from localstripe): the API side.

Shape and rules follow Stripe's ``checkout.session`` for the three modes Billow uses:
``setup`` (collect a card for later), ``payment`` (pay an invoice now) and
``subscription`` (subscribe to one recurring Price, paying its first invoice). As in
Stripe since API version 2022-08-01, the SetupIntent, PaymentIntent or subscription is
created when the customer confirms on the hosted page (see ``checkout_page``), not up
front. In ``subscription`` mode the page can ask for a promotion code, a billing
address, a phone number and a tax id, as the session's options say.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web
from localstripe.resources import (
    Customer,
    PaymentIntent,
    Product,
    StripeObject,
    random_id,
    store,
)

from .catalog import CatalogPrice
from .common import (
    Routes,
    all_of,
    as_bool,
    as_dict,
    as_int,
    as_str_list,
    as_url,
    find,
    newest_first,
    read_params,
    reject_unknown,
    require,
    updated_metadata,
)
from .context import acting_as, current
from .errors import MissingObject, StripeApiError, json_response
from .events import emit
from .payments import cancel_payment_intent
from .tax import customer_address, is_locatable

_PARAMS = (
    "mode",
    "customer",
    "success_url",
    "cancel_url",
    "payment_method_types",
    "currency",
    "line_items",
    "payment_intent_data",
    "setup_intent_data",
    "metadata",
    "expires_at",
    "client_reference_id",
    "subscription_data",
    "allow_promotion_codes",
    "billing_address_collection",
    "phone_number_collection",
    "tax_id_collection",
    "automatic_tax",
    "customer_update",
)
PAYMENT_METHOD_TYPES = ("card", "sepa_debit", "us_bank_account", "bacs_debit", "link", "boleto")
_MIN_LIFETIME, _MAX_LIFETIME = 30 * 60, 24 * 60 * 60
_SUBSCRIPTION_ONLY = (
    "allow_promotion_codes",
    "billing_address_collection",
    "phone_number_collection",
    "tax_id_collection",
    "automatic_tax",
    "customer_update",
)
# Session fields Stripe returns that stay null for what the emulator supports, or
# until the session completes (customer_details, payment_intent, setup_intent).
_NULL_FIELDS = (
    "adaptive_pricing",
    "after_expiration",
    "client_secret",
    "collected_information",
    "consent",
    "consent_collection",
    "currency_conversion",
    "customer_account",
    "customer_details",
    "customer_email",
    "integration_identifier",
    "invoice",
    "invoice_creation",
    "locale",
    "managed_payments",
    "origin_context",
    "payment_intent",
    "payment_link",
    "payment_method_configuration_details",
    "permissions",
    "recovered_from",
    "saved_payment_method_options",
    "setup_intent",
    "shipping_address_collection",
    "subscription",
    "shipping_cost",
    "submit_type",
    "wallet_options",
)


class CheckoutSession(StripeObject):
    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(self, account: str | None, base_url: str, fields: dict[str, Any]) -> None:
        super().__init__(id=self._id_prefix + random_id(58))
        self._account = account
        self._line_items: list[dict[str, Any]] = fields.pop("line_items")
        self._payment_intent_data: dict[str, Any] = fields.pop("payment_intent_data")
        self._setup_intent_data: dict[str, Any] = fields.pop("setup_intent_data")
        self._subscription_data: dict[str, Any] = fields.pop("subscription_data")
        self._customer_update: dict[str, str] = fields.pop("customer_update")
        tax_ids, phone = fields.pop("tax_id_collection"), fields.pop("phone_number_collection")
        automatic_tax = fields.pop("automatic_tax")
        for name in _NULL_FIELDS:
            setattr(self, name, None)
        for name, value in fields.items():
            setattr(self, name, value)
        payment = self.mode in ("payment", "subscription")
        self.amount_subtotal = self.amount_total = (
            sum(item["amount_total"] for item in self._line_items) if payment else None
        )
        self.automatic_tax = {
            "enabled": automatic_tax,
            "liability": {"type": "self"} if automatic_tax else None,
            "status": "requires_location_inputs" if automatic_tax else None,
        }
        self.custom_fields: list[Any] = []
        self.custom_text = dict.fromkeys(
            ("after_submit", "shipping_address", "submit", "terms_of_service_acceptance")
        )
        self.customer_creation = "if_required" if payment and not self.customer else None
        self.discounts: list[Any] = []
        self.payment_method_collection = "always" if self.mode != "payment" else None
        self.payment_method_options: dict[str, Any] = {}
        self.payment_status = "unpaid" if payment else "no_payment_required"
        self.phone_number_collection = {"enabled": phone}
        self.tax_id_collection = {"enabled": tax_ids, "required": "never"}
        self.shipping_options: list[Any] = []
        self.status = "open"
        self.total_details: dict[str, int] | None = (
            {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0} if payment else None
        )
        self.ui_mode = "hosted"
        self.url: str | None = f"{base_url}/checkout/{self.id}"

    def _expire_if_due(self) -> None:
        """Expire lazily: nothing runs in the background to do it on time."""
        if self.status == "open" and time.time() >= self.expires_at:
            with acting_as(self._account):
                self._expire()

    def _expire(self) -> None:
        if self.status != "open":
            raise StripeApiError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f"Checkout Session has a status of `{self.status}`.",
            )
        self.status = "expired"
        self.url = None
        if self.payment_intent:
            payment_intent = PaymentIntent._api_retrieve(self.payment_intent)
            if payment_intent.status != "canceled":
                cancel_payment_intent(payment_intent, "abandoned")
        emit("checkout.session.expired", self)

    def _complete(self, collected: Collected | None = None) -> None:
        customer = Customer._api_retrieve(self.customer)
        collected = collected or Collected()
        self.status = "complete"
        self.url = None
        if self.mode != "setup":
            self.payment_status = "paid"
        self.customer_details = {
            "address": collected.address or customer.address,
            "email": customer.email,
            "name": customer.name,
            "phone": collected.phone or customer.phone,
            "tax_exempt": "none",
            "tax_ids": [collected.tax_id] if collected.tax_id else [],
        }
        emit("checkout.session.completed", self)


@dataclasses.dataclass(frozen=True)
class Collected:
    """What the hosted page asked the customer for, beyond the card."""

    address: dict[str, Any] | None = None
    phone: str | None = None
    tax_id: dict[str, str] | None = None
    promotion_code: str | None = None


def _priced_item(where: str, price_id: str, quantity: int, mode: str) -> dict[str, Any]:
    """A line on a Price of the catalog: recurring in ``subscription`` mode only."""
    price = find(CatalogPrice, price_id, param=f"{where}[price]")
    if not price.active:
        raise StripeApiError(
            400, f"The price specified is inactive: {price.id}", param=f"{where}[price]"
        )
    if (price.type == "recurring") != (mode == "subscription"):
        message = (
            "You must provide at least one recurring price in `subscription` mode when using "
            "prices."
            if mode == "subscription"
            else "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices."
        )
        raise StripeApiError(400, message, param=f"{where}[price]")
    product = store.get(f"product:{price.product}")
    return {
        "currency": price.currency,
        "description": product.name if product is not None else price.product,
        "quantity": quantity,
        "unit_amount": int(price.unit_amount),
        "amount_total": int(price.unit_amount) * quantity,
        "price": price.id,
    }


def _line_item(index: int, raw: Any, mode: str) -> dict[str, Any]:
    where = f"line_items[{index}]"
    item = as_dict(raw, where)
    reject_unknown(item, ("price", "price_data", "quantity"), where)
    quantity = as_int(require(item, "quantity", f"{where}[quantity]"), f"{where}[quantity]", 1)
    if "price" in item:
        return _priced_item(where, str(item["price"]), quantity, mode)
    if mode == "subscription":
        raise StripeApiError(
            400, "Billow's emulator takes subscription lines on a Price.", param=f"{where}[price]"
        )
    where += "[price_data]"
    price = as_dict(require(item, "price_data", where), where)
    reject_unknown(price, ("currency", "unit_amount", "product_data", "product"), where)
    if "product" in price:
        product = store.get(Product.object + ":" + str(price["product"]))
        if product is None:
            raise MissingObject("product", str(price["product"]), param=f"{where}[product]")
        name = product.name
    else:
        product_data = as_dict(
            require(price, "product_data", f"{where}[product_data]"), f"{where}[product_data]"
        )
        name = require(product_data, "name", f"{where}[product_data][name]")
    unit_amount = as_int(
        require(price, "unit_amount", f"{where}[unit_amount]"), f"{where}[unit_amount]"
    )
    return {
        "currency": str(require(price, "currency", f"{where}[currency]")).lower(),
        "description": name,
        "quantity": quantity,
        "unit_amount": unit_amount,
        "amount_total": unit_amount * quantity,
    }


def _intent_data(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    data = as_dict(params.get(name, {}), name)
    reject_unknown(data, allowed, name)
    if "metadata" in data:
        data["metadata"] = updated_metadata({}, data["metadata"])
    usage = data.get("setup_future_usage")
    if usage not in (None, "on_session", "off_session"):
        param = f"{name}[setup_future_usage]"
        raise StripeApiError(400, f"Invalid {param}: {usage}", param=param)
    return data


def _optional_url(params: dict[str, Any], name: str) -> str | None:
    return as_url(params[name], name) if name in params else None


def _subscription_data(params: dict[str, Any]) -> dict[str, Any]:
    data = as_dict(params.get("subscription_data", {}), "subscription_data")
    reject_unknown(data, ("metadata", "billing_cycle_anchor", "description"), "subscription_data")
    if "metadata" in data:
        data["metadata"] = updated_metadata({}, data["metadata"])
    if "billing_cycle_anchor" in data:
        anchor = as_int(data["billing_cycle_anchor"], "subscription_data[billing_cycle_anchor]")
        if anchor <= int(time.time()):
            raise StripeApiError(
                400,
                "`subscription_data[billing_cycle_anchor]` must be in the future.",
                param="subscription_data[billing_cycle_anchor]",
            )
        data["billing_cycle_anchor"] = anchor
    return data


def _enabled(params: dict[str, Any], name: str) -> bool:
    """An ``{enabled: bool}`` option, as Checkout's collection options are."""
    option = as_dict(params.get(name, {"enabled": False}), name)
    reject_unknown(option, ("enabled",), name)
    return as_bool(require(option, "enabled", f"{name}[enabled]"), f"{name}[enabled]")


def _customer_update(params: dict[str, Any], customer: str | None) -> dict[str, str]:
    update = as_dict(params.get("customer_update", {}), "customer_update")
    reject_unknown(update, ("address", "name", "shipping"), "customer_update")
    if update and customer is None:
        raise StripeApiError(
            400, "`customer_update` can only be used with `customer`.", param="customer_update"
        )
    for name, value in update.items():
        if value not in ("auto", "never"):
            param = f"customer_update[{name}]"
            raise StripeApiError(400, f"Invalid {param}: must be one of auto, never", param=param)
    return {str(name): str(value) for name, value in update.items()}


def _subscription_options(params: dict[str, Any], customer: str | None) -> dict[str, Any]:
    """The hosted page's extra fields and the tax options, with Stripe's rules for an
    existing customer: Checkout may only save what it collects (a tax id's business
    name, a taxable address) where ``customer_update`` lets it."""
    collection = params.get("billing_address_collection", "auto")
    if collection not in ("auto", "required"):
        raise StripeApiError(
            400,
            "Invalid billing_address_collection: must be one of auto or required",
            param="billing_address_collection",
        )
    options = {
        "allow_promotion_codes": as_bool(
            params.get("allow_promotion_codes", False), "allow_promotion_codes"
        ),
        "billing_address_collection": collection,
        "phone_number_collection": _enabled(params, "phone_number_collection"),
        "tax_id_collection": _enabled(params, "tax_id_collection"),
        "automatic_tax": _enabled(params, "automatic_tax"),
        "customer_update": _customer_update(params, customer),
    }
    updates = options["customer_update"]
    assert isinstance(updates, dict)
    address_kept = updates.get("address") == "auto"
    unlocatable = customer is not None and not is_locatable(customer_address(customer))
    if options["automatic_tax"] and unlocatable and not address_kept:
        raise StripeApiError(
            400,
            "Automatic tax calculation in Checkout requires a valid address on the "
            "Customer. Add a valid address to the Customer or set "
            "`customer_update[address]` to 'auto' to save the address entered in "
            "Checkout to the Customer.",
            param="automatic_tax[enabled]",
        )
    names_kept = updates.get("name") == "auto"
    if customer is not None and options["tax_id_collection"] and not names_kept:
        raise StripeApiError(
            400,
            "tax_id_collection requires updating business name on the customer. To "
            "enable tax ID collection for an existing customer, please set "
            "`customer_update[name]` to `auto`.",
            param="tax_id_collection[enabled]",
        )
    return options


def _session_fields(params: dict[str, Any]) -> dict[str, Any]:
    """Validate creation parameters the way Stripe does, naming the faulty ``param``."""
    reject_unknown(params, _PARAMS)
    mode = require(params, "mode")
    if mode not in ("payment", "setup", "subscription"):
        raise StripeApiError(
            400, "Invalid mode: must be one of payment, setup, or subscription", param="mode"
        )
    misplaced = {
        "payment": ("setup_intent_data", "subscription_data"),
        "setup": ("payment_intent_data", "line_items", "subscription_data"),
        "subscription": ("payment_intent_data", "setup_intent_data"),
    }[mode]
    for name in misplaced:
        if name in params:
            raise StripeApiError(400, f"You can not pass `{name}` in `{mode}` mode.", param=name)
    if mode != "subscription":
        for name in _SUBSCRIPTION_ONLY:
            if name in params:
                raise StripeApiError(
                    400,
                    f"Billow's emulator supports `{name}` in `subscription` mode only.",
                    param=name,
                )

    customer = params.get("customer")
    if customer is not None and store.get(Customer.object + ":" + str(customer)) is None:
        raise MissingObject("customer", str(customer), param="customer")
    if mode == "subscription" and customer is None:
        raise StripeApiError(
            400,
            "Billow's emulator makes subscriptions for an existing `customer`.",
            param="customer",
        )
    types = as_str_list(params.get("payment_method_types", ["card"]), "payment_method_types")
    for index, kind in enumerate(types):
        if kind not in PAYMENT_METHOD_TYPES:
            param = f"payment_method_types[{index}]"
            raise StripeApiError(
                400,
                f"Invalid {param}: must be one of {', '.join(PAYMENT_METHOD_TYPES)}",
                param=param,
            )
    now = int(time.time())
    expires_at = as_int(params.get("expires_at", now + _MAX_LIFETIME), "expires_at")
    if not now + _MIN_LIFETIME <= expires_at <= now + _MAX_LIFETIME:
        raise StripeApiError(
            400,
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
            "Checkout Session creation.",
            param="expires_at",
        )
    reference = params.get("client_reference_id")
    if reference is not None and (not isinstance(reference, str) or len(reference) > 200):
        raise StripeApiError(400, "Invalid client_reference_id", param="client_reference_id")

    currency = str(params["currency"]).lower() if params.get("currency") else None
    line_items: list[dict[str, Any]] = []
    if mode in ("payment", "subscription"):
        raw_items = require(params, "line_items")
        if isinstance(raw_items, dict):  # form-encoded lists arrive keyed by index
            raw_items = [raw_items[key] for key in sorted(raw_items, key=int)]
        if not isinstance(raw_items, list):
            raise StripeApiError(400, "Invalid array: line_items", param="line_items")
        line_items = [_line_item(index, raw, mode) for index, raw in enumerate(raw_items)]
        if mode == "subscription" and len(line_items) != 1:
            raise StripeApiError(
                400, "Billow's emulator takes exactly one subscription line.", param="line_items"
            )
        currencies = {item["currency"] for item in line_items} | ({currency} - {None})
        if len(currencies) != 1:
            raise StripeApiError(
                400, "All line items must use the same currency.", param="line_items"
            )
        currency = currencies.pop()
        if mode == "payment" and sum(item["amount_total"] for item in line_items) <= 0:
            raise StripeApiError(
                400,
                "The Checkout Session's total amount due must be greater than 0.",
                param="line_items",
            )
    elif not (currency or "payment_method_types" in params or customer):
        raise StripeApiError(
            400,
            "Missing required param: currency. In setup mode, pass currency, "
            "payment_method_types or customer.",
            param="currency",
        )

    return {
        "mode": mode,
        "customer": customer,
        "success_url": _optional_url(params, "success_url"),
        "cancel_url": _optional_url(params, "cancel_url"),
        "payment_method_types": types,
        "currency": currency,
        "metadata": updated_metadata({}, params.get("metadata", {})),
        "expires_at": expires_at,
        "client_reference_id": reference,
        "line_items": line_items,
        "payment_intent_data": _intent_data(
            params, "payment_intent_data", ("description", "setup_future_usage", "metadata")
        ),
        "setup_intent_data": _intent_data(params, "setup_intent_data", ("description", "metadata")),
        "subscription_data": _subscription_data(params),
        **_subscription_options(params, customer),
    }


def find_session(session_id: str) -> CheckoutSession | None:
    """The session, expired first if its time is up."""
    session = store.get(CheckoutSession.object + ":" + session_id)
    if isinstance(session, CheckoutSession):
        session._expire_if_due()
        return session
    return None


def _session(session_id: str) -> CheckoutSession:
    session = find_session(session_id)
    if session is None:
        raise MissingObject("checkout.session", session_id)
    return session


async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    ctx = current()
    session = CheckoutSession(ctx.account, ctx.base_url, _session_fields(params))
    return json_response(session._export(expand=expand))


async def retrieve(request: web.Request) -> web.Response:
    params = await read_params(request)
    session = _session(request.match_info["id"])
    return json_response(session._export(expand=params.get("expand")))


async def expire(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ())
    session = _session(request.match_info["id"])
    session._expire()
    return json_response(session._export(expand=expand))


async def list_all(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    filters = {
        name: params.pop(name)
        for name in ("customer", "payment_intent", "status")
        if name in params
    }
    reject_unknown(params, ("limit", "starting_after"))
    sessions = all_of(CheckoutSession, "/v1/checkout/sessions", params)
    for session in sessions._list:
        session._expire_if_due()
    listing = newest_first(
        sessions,
        keep=lambda obj: all(getattr(obj, name) == value for name, value in filters.items()),
    )
    return json_response(listing._export(expand=expand))


ROUTES: Routes = [
    ("POST", "/v1/checkout/sessions", create),
    ("GET", "/v1/checkout/sessions", list_all),
    ("GET", "/v1/checkout/sessions/{id}", retrieve),
    ("POST", "/v1/checkout/sessions/{id}/expire", expire),
]
