"""Stripe Billing subscriptions on Prices (localstripe's run on legacy Plans).

What Billow's sync needs, as Stripe does it: one-item subscriptions on a recurring
Price, a billing cycle anchor, ``cancel_at``, changing the item's Price, cancelling,
and the ``customer.subscription.*`` events. Periods live on the items, as in API
versions since 2025 (``current_period_start``/``current_period_end``).

Billow asks for ``payment_behavior=error_if_incomplete``: a customer with no card to
charge is then Stripe's 400, not a subscription left ``incomplete``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from localstripe.resources import Customer, PaymentMethod, StripeObject, random_id, store

from . import upstream
from .billing import add_interval, bill_period, invoice_line, now_for
from .catalog import CatalogPrice
from .common import (
    Handler,
    Routes,
    all_of,
    as_bool,
    as_dict,
    as_int,
    find,
    newest_first,
    read_params,
    reject_unknown,
    require,
    updated_metadata,
)
from .errors import StripeApiError, json_response
from .events import emit
from .promotions import discount
from .tax import customer_address, locate

PRORATIONS = ("create_prorations", "none", "always_invoice")
PAYMENT_BEHAVIORS = ("allow_incomplete", "error_if_incomplete", "default_incomplete")


class CatalogSubscription(StripeObject):
    object = "subscription"
    _id_prefix = "sub_"

    def __init__(
        self,
        customer: str,
        price: Any,
        default_payment_method: str | None,
        anchor: int | None,
        cancel_at: int | None,
        metadata: dict[str, str],
        now: int,
        *,
        automatic_tax: bool = False,
    ):
        """``automatic_tax`` is Stripe Tax on every invoice; it needs a customer the tax
        table can place, else nothing is created (``customer_tax_location_invalid``)."""
        if automatic_tax:
            locate(customer_address(customer), "customer")
        super().__init__()
        self.created = now
        recurring = price.recurring
        end = (
            anchor
            if anchor is not None and anchor > now
            else add_interval(now, recurring["interval"], recurring["interval_count"])
        )
        self.application = None
        self.automatic_tax = _automatic_tax(automatic_tax)
        self.billing_cycle_anchor = anchor if anchor is not None and anchor > now else now
        self.cancel_at = cancel_at
        self.cancel_at_period_end = False
        self.canceled_at: int | None = None
        self.cancellation_details: dict[str, str | None] = {
            "comment": None,
            "feedback": None,
            "reason": None,
        }
        self.collection_method = "charge_automatically"
        self.currency = price.currency
        self.customer = customer
        self.default_payment_method = default_payment_method
        self.description = None
        self.discounts: list[Any] = []
        self.ended_at: int | None = None
        self.latest_invoice = None
        self.metadata = metadata
        self.start_date = now
        self.status = "active"
        self._pending_prorations: list[dict[str, Any]] = []
        self.trial_end = None
        self.trial_start = None
        self._item = {
            "id": "si_" + random_id(14),
            "object": "subscription_item",
            "created": now,
            "discounts": [],
            "metadata": {},
            "price": price.id,
            "quantity": 1,
            "subscription": self.id,
            "tax_rates": [],
            "current_period_start": now,
            "current_period_end": end,
        }

    @property
    def items(self) -> dict[str, Any]:
        price = store.get(f"price:{self._item['price']}")
        return {
            "object": "list",
            "data": [{**self._item, "price": price._export() if price else self._item["price"]}],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={self.id}",
        }


def _automatic_tax(enabled: bool) -> dict[str, Any]:
    """A subscription's ``automatic_tax``: the account itself is liable when enabled."""
    liability = {"type": "self"} if enabled else None
    return {"enabled": enabled, "liability": liability, "disabled_reason": None}


def _automatic_tax_param(params: dict[str, Any]) -> bool | None:
    """``automatic_tax[enabled]`` when the request sets it."""
    if "automatic_tax" not in params:
        return None
    setting = as_dict(params["automatic_tax"], "automatic_tax")
    reject_unknown(setting, ("enabled",), "automatic_tax")
    return as_bool(require(setting, "enabled", "automatic_tax[enabled]"), "automatic_tax[enabled]")


def _recurring_price(price_id: str, param: str) -> Any:
    price = find(CatalogPrice, price_id, param=param)
    if price.type != "recurring":
        raise StripeApiError(
            400,
            "The price specified is set to `type=one_time` but this field only accepts "
            "prices with `type=recurring`.",
            param=param,
        )
    if not price.active:
        raise StripeApiError(400, f"The price specified is inactive: {price.id}", param=param)
    return price


def _one_item(params: dict[str, Any]) -> dict[str, Any]:
    items = params.get("items")
    if isinstance(items, dict):  # form-encoded lists arrive keyed by index
        items = [items[key] for key in sorted(items, key=int)]
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        raise StripeApiError(400, "Billow's emulator takes exactly one item.", param="items")
    return items[0]


def _chargeable(customer: Any, default_payment_method: str | None) -> None:
    """``error_if_incomplete``: the first invoice must have a card to go on."""
    if default_payment_method is not None:
        method = find(PaymentMethod, default_payment_method, "default_payment_method")
        if method.customer != customer.id:
            raise StripeApiError(
                400,
                f"The payment method {method.id} is not attached to customer {customer.id}.",
                param="default_payment_method",
            )
        return
    if not (customer.invoice_settings or {}).get("default_payment_method"):
        raise StripeApiError(
            400,
            "This customer has no attached payment source or default payment method. Please "
            "consider adding a default payment method.",
            code="resource_missing",
        )


def _legacy(method: str, path: str) -> Handler:
    """localstripe's own handler: subscriptions on legacy Plans are localstripe's."""
    return next(h for m, p, h in upstream.routes() if (m, p) == (method, path))


def _on_legacy_plan(params: dict[str, Any]) -> bool:
    items = params.get("items")
    listed = items.values() if isinstance(items, dict) else items or []
    return any(isinstance(item, dict) and "plan" in item for item in listed)


async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    if _on_legacy_plan(params):
        return await _legacy("POST", "/v1/subscriptions")(request)  # type: ignore[return-value]
    reject_unknown(
        params,
        (
            "customer",
            "items",
            "default_payment_method",
            "billing_cycle_anchor",
            "cancel_at",
            "metadata",
            "proration_behavior",
            "payment_behavior",
            "automatic_tax",
            "expand",
        ),
    )
    params.pop("expand", None)
    customer = find(Customer, str(require(params, "customer")), "customer")
    item = _one_item(params)
    reject_unknown(item, ("price", "quantity"), prefix="items[0]")
    price = _recurring_price(str(require(item, "price", "items[0][price]")), "items[0][price]")
    if params.get("proration_behavior", "create_prorations") not in PRORATIONS:
        raise StripeApiError(400, "Invalid proration_behavior", param="proration_behavior")
    if params.get("payment_behavior", "allow_incomplete") not in PAYMENT_BEHAVIORS:
        raise StripeApiError(400, "Invalid payment_behavior", param="payment_behavior")
    default_payment_method = params.get("default_payment_method")
    _chargeable(customer, default_payment_method)
    now = now_for(customer.id)
    anchor = (
        as_int(params["billing_cycle_anchor"], "billing_cycle_anchor")
        if "billing_cycle_anchor" in params
        else None
    )
    if anchor is not None and anchor < now - 60:
        raise StripeApiError(
            400,
            "billing_cycle_anchor cannot be later than next natural billing date",
            param="billing_cycle_anchor",
        )
    cancel_at = as_int(params["cancel_at"], "cancel_at") if "cancel_at" in params else None
    subscription = subscribe(
        customer.id,
        price,
        default_payment_method=default_payment_method,
        anchor=anchor,
        cancel_at=cancel_at,
        metadata=updated_metadata({}, params.get("metadata", {})),
        automatic_tax=bool(_automatic_tax_param(params)),
    )
    return json_response(subscription._export())


def subscribe(
    customer_id: str,
    price: Any,
    *,
    default_payment_method: str | None,
    anchor: int | None,
    cancel_at: int | None,
    metadata: dict[str, str],
    automatic_tax: bool = False,
    promotion_code: Any | None = None,
) -> CatalogSubscription:
    """A subscription made (through the API or a Checkout Session) and its first
    invoice, finalized and charged at once, with Stripe's events. With automatic tax,
    a customer Stripe Tax cannot locate is refused before anything is made."""
    subscription = CatalogSubscription(
        customer=customer_id,
        price=price,
        default_payment_method=default_payment_method,
        anchor=anchor,
        cancel_at=cancel_at,
        metadata=metadata,
        now=now_for(customer_id),
        automatic_tax=automatic_tax,
    )
    if promotion_code is not None:
        subscription.discounts = [
            discount(promotion_code, customer_id, subscription.id, subscription.created)
        ]
    emit("customer.subscription.created", subscription)
    bill_period(
        subscription,
        _current_period(subscription),
        "subscription_create",
        _first_amount(subscription, price),
    )
    return subscription


def _current_period(subscription: CatalogSubscription) -> tuple[int, int]:
    item = subscription._item
    return int(item["current_period_start"]), int(item["current_period_end"])


def _first_amount(subscription: CatalogSubscription, price: Any) -> int:
    """A full period's price, or its share up to a billing cycle anchor (by the second,
    as Stripe prorates)."""
    start, end = _current_period(subscription)
    recurring = price.recurring
    full = add_interval(start, recurring["interval"], recurring["interval_count"]) - start
    return (
        int(price.unit_amount)
        if end - start >= full
        else round(price.unit_amount * (end - start) / full)
    )


async def update(request: web.Request) -> web.Response:
    subscription = find(CatalogSubscription, request.match_info["id"])
    if not isinstance(subscription, CatalogSubscription):
        return await _legacy("POST", "/v1/subscriptions/{id}")(request)  # type: ignore[return-value]
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(
        params, ("items", "metadata", "proration_behavior", "cancel_at", "automatic_tax")
    )
    if subscription.status == "canceled":
        raise StripeApiError(
            400,
            "A canceled subscription can only update its cancellation_details and metadata.",
        )
    automatic_tax = _automatic_tax_param(params)
    if automatic_tax:
        locate(customer_address(subscription.customer), "customer")
    previous: dict[str, Any] = {}
    if "items" in params:
        item = _one_item(params)
        reject_unknown(item, ("id", "price", "quantity"), prefix="items[0]")
        if item.get("id") != subscription._item["id"]:
            raise StripeApiError(
                400, f"No such subscription item: '{item.get('id')}'", param="items[0][id]"
            )
        price = _recurring_price(str(require(item, "price", "items[0][price]")), "items[0][price]")
        if price.id != subscription._item["price"]:
            previous["items"] = subscription.items
            old = store.get(f"price:{subscription._item['price']}")
            subscription._item["price"] = price.id
            if params.get("proration_behavior", "create_prorations") != "none":
                _prorate(subscription, old, price)
    if "metadata" in params:
        merged = updated_metadata(subscription.metadata, params["metadata"])
        if merged != subscription.metadata:
            previous["metadata"] = subscription.metadata
            subscription.metadata = merged
    if "cancel_at" in params:
        cancel_at = as_int(params["cancel_at"], "cancel_at") if params["cancel_at"] else None
        if cancel_at != subscription.cancel_at:
            previous["cancel_at"] = subscription.cancel_at
            subscription.cancel_at = cancel_at
    if automatic_tax is not None and automatic_tax != subscription.automatic_tax["enabled"]:
        previous["automatic_tax"] = subscription.automatic_tax
        subscription.automatic_tax = _automatic_tax(automatic_tax)
    if previous:
        emit("customer.subscription.updated", subscription, previous)
    return json_response(subscription._export())


def _prorate(subscription: CatalogSubscription, old: Any, new: Any) -> None:
    """Stripe's ``create_prorations``: the unused time on the old Price as a credit and
    the rest of the period on the new one as a charge, both billed with the next
    invoice (to the second, as Stripe prorates)."""
    now = now_for(subscription.customer)
    start, end = _current_period(subscription)
    if not start <= now < end:
        return
    share = (end - now) / (end - start)
    subscription._pending_prorations += [
        invoice_line(
            subscription,
            old,
            -round(old.unit_amount * share),
            (now, end),
            proration=True,
            description=f"Unused time on {old.product}",
        ),
        invoice_line(
            subscription,
            new,
            round(new.unit_amount * share),
            (now, end),
            proration=True,
            description=f"Remaining time on {new.product}",
        ),
    ]


async def cancel(request: web.Request) -> web.Response:
    subscription = find(CatalogSubscription, request.match_info["id"])
    if not isinstance(subscription, CatalogSubscription):
        return await _legacy("DELETE", "/v1/subscriptions/{id}")(request)  # type: ignore[return-value]
    if subscription.status == "canceled":
        raise StripeApiError(
            400,
            f"No such subscription: '{subscription.id}'; a similar object exists in test "
            "mode, but has been canceled.",
            code="resource_missing",
        )
    now = now_for(subscription.customer)
    subscription.status = "canceled"
    subscription.canceled_at = subscription.ended_at = now
    subscription.cancellation_details = {
        "comment": None,
        "feedback": None,
        "reason": "cancellation_requested",
    }
    emit("customer.subscription.deleted", subscription)
    return json_response(subscription._export())


async def retrieve(request: web.Request) -> web.Response:
    return json_response(find(CatalogSubscription, request.match_info["id"])._export())


async def list_all(request: web.Request) -> web.Response:
    params = await read_params(request)
    filters = {name: params.pop(name) for name in ("customer", "status") if name in params}
    reject_unknown(params, ("limit", "starting_after"))
    wanted = filters.get("status")

    def keep(sub: Any) -> bool:
        """Stripe leaves canceled subscriptions out unless asked (``status=all``)."""
        if "customer" in filters and sub.customer != filters["customer"]:
            return False
        if wanted == "all":
            return True
        return bool(sub.status == wanted) if wanted else sub.status != "canceled"

    listing = newest_first(all_of(CatalogSubscription, "/v1/subscriptions", params), keep=keep)
    return json_response(listing._export())


ROUTES: Routes = [
    ("POST", "/v1/subscriptions", create),
    ("GET", "/v1/subscriptions", list_all),
    ("GET", "/v1/subscriptions/{id}", retrieve),
    ("POST", "/v1/subscriptions/{id}", update),
    ("DELETE", "/v1/subscriptions/{id}", cancel),
]
