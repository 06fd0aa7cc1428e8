"""Stripe Billing's catalog: Products, Prices and Coupons, as Billow mirrors its own.

localstripe has no Prices, gives Products the fields of an old API version, and takes
neither a coupon ``name`` nor a coupon without an ``id``. These handlers answer with
today's shapes (``reference/stripe-fixtures3.json``), check what Stripe checks with
Stripe's words, keep what Stripe keeps immutable immutable (a Price's amount, a
Coupon's terms), and send the ``product.*``, ``price.*`` and ``coupon.*`` events.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from localstripe.resources import StripeObject, random_id, store

from .common import (
    Routes,
    all_of,
    apply_changes,
    as_bool,
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

INTERVALS = ("day", "week", "month", "year")
MAX_UNIT_AMOUNT = 99_999_999
"""Stripe's ceiling for ``unit_amount`` (eight digits)."""
MAX_INTERVAL = {"day": 365, "week": 52, "month": 12, "year": 1}
"""The longest recurrence Stripe accepts: one year, whatever the unit."""


class CatalogProduct(StripeObject):
    object = "product"
    _id_prefix = "prod_"

    def __init__(self, name: str, active: bool, description: str | None, metadata: dict[str, str]):
        super().__init__()
        self.name = name
        self.active = active
        self.description = description
        self.metadata = metadata
        self.default_price: str | None = None
        self.images: list[str] = []
        self.marketing_features: list[Any] = []
        self.package_dimensions = None
        self.shippable = None
        self.statement_descriptor = None
        self.tax_code = None
        self.unit_label = None
        self.updated = self.created
        self.url = None
        self.type = "service"


class CatalogPrice(StripeObject):
    object = "price"
    _id_prefix = "price_"

    def __init__(
        self,
        product: str,
        currency: str,
        unit_amount: int,
        recurring: dict[str, Any] | None,
        nickname: str | None,
        metadata: dict[str, str],
    ):
        super().__init__()
        self.active = True
        self.billing_scheme = "per_unit"
        self.currency = currency
        self.custom_unit_amount = None
        self.lookup_key = None
        self.metadata = metadata
        self.nickname = nickname
        self.product = product
        self.recurring = recurring
        self.tax_behavior = "unspecified"
        self.tiers_mode = None
        self.transform_quantity = None
        self.type = "recurring" if recurring else "one_time"
        self.unit_amount = unit_amount
        self.unit_amount_decimal = str(unit_amount)


class CatalogCoupon(StripeObject):
    object = "coupon"

    def __init__(
        self, coupon_id: str, terms: dict[str, Any], name: str | None, metadata: dict[str, str]
    ):
        super().__init__(coupon_id)
        self.amount_off = terms.get("amount_off")
        self.currency = terms.get("currency")
        self.percent_off = terms.get("percent_off")
        self.duration = terms["duration"]
        self.duration_in_months = terms.get("duration_in_months")
        self.redeem_by = terms.get("redeem_by")
        self.max_redemptions = terms.get("max_redemptions")
        self.name = name
        self.metadata = metadata
        self.times_redeemed = 0
        self.valid = True


# -- products --------------------------------------------------------------------------


async def create_product(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(params, ("name", "active", "description", "metadata"))
    product = CatalogProduct(
        name=str(require(params, "name")),
        active=as_bool(params.get("active", True), "active"),
        description=params.get("description"),
        metadata=updated_metadata({}, params.get("metadata", {})),
    )
    emit("product.created", product)
    return json_response(product._export())


async def update_product(request: web.Request) -> web.Response:
    product = find(CatalogProduct, request.match_info["id"])
    params = await read_params(request)
    reject_unknown(params, ("name", "active", "description", "metadata"))
    changes: dict[str, Any] = {}
    if "name" in params:
        changes["name"] = str(require(params, "name"))
    if "active" in params:
        changes["active"] = as_bool(params["active"], "active")
    if "description" in params:
        changes["description"] = params["description"] or None
    if "metadata" in params:
        changes["metadata"] = updated_metadata(product.metadata, params["metadata"])
    previous = apply_changes(product, changes)
    if previous:
        product.updated = _now()
        emit("product.updated", product, previous)
    return json_response(product._export())


async def retrieve_product(request: web.Request) -> web.Response:
    return json_response(find(CatalogProduct, request.match_info["id"])._export())


async def list_products(request: web.Request) -> web.Response:
    params = await read_params(request)
    active = as_bool(params.pop("active"), "active") if "active" in params else None
    reject_unknown(params, ("limit", "starting_after"))
    listing = newest_first(
        all_of(CatalogProduct, "/v1/products", params),
        keep=lambda product: active is None or product.active == active,
    )
    return json_response(listing._export())


# -- prices ----------------------------------------------------------------------------


def _recurring(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StripeApiError(400, "Invalid object", param="recurring")
    reject_unknown(value, ("interval", "interval_count"), prefix="recurring")
    interval = require(value, "interval", "recurring[interval]")
    if interval not in INTERVALS:
        raise StripeApiError(
            400,
            f"Invalid recurring[interval]: must be one of {', '.join(INTERVALS)}",
            param="recurring[interval]",
        )
    count = as_int(value.get("interval_count", 1), "recurring[interval_count]", 1)
    if count > MAX_INTERVAL[interval]:
        raise StripeApiError(
            400,
            "Invalid recurring[interval_count]: the maximum billing interval is one year "
            "(1 year, 12 months, or 52 weeks).",
            param="recurring[interval_count]",
        )
    return {
        "interval": interval,
        "interval_count": count,
        "meter": None,
        "usage_type": "licensed",
        "trial_period_days": None,
    }


async def create_price(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(
        params, ("product", "currency", "unit_amount", "recurring", "nickname", "metadata")
    )
    product = find(CatalogProduct, str(require(params, "product")), param="product")
    currency = str(require(params, "currency")).lower()
    amount = as_int(require(params, "unit_amount"), "unit_amount")
    if amount > MAX_UNIT_AMOUNT:
        raise StripeApiError(
            400,
            f"Invalid integer: {amount}. This value must be less than or equal to "
            f"{MAX_UNIT_AMOUNT}.",
            param="unit_amount",
            code="parameter_invalid_integer",
        )
    price = CatalogPrice(
        product=product.id,
        currency=currency,
        unit_amount=amount,
        recurring=_recurring(params["recurring"]) if "recurring" in params else None,
        nickname=params.get("nickname"),
        metadata=updated_metadata({}, params.get("metadata", {})),
    )
    emit("price.created", price)
    return json_response(price._export())


async def update_price(request: web.Request) -> web.Response:
    """A Price's amount, currency and recurrence never change; only these do."""
    price = find(CatalogPrice, request.match_info["id"])
    params = await read_params(request)
    reject_unknown(params, ("active", "nickname", "metadata"))
    changes: dict[str, Any] = {}
    if "active" in params:
        changes["active"] = as_bool(params["active"], "active")
    if "nickname" in params:
        changes["nickname"] = params["nickname"] or None
    if "metadata" in params:
        changes["metadata"] = updated_metadata(price.metadata, params["metadata"])
    previous = apply_changes(price, changes)
    if previous:
        emit("price.updated", price, previous)
    return json_response(price._export())


async def retrieve_price(request: web.Request) -> web.Response:
    return json_response(find(CatalogPrice, request.match_info["id"])._export())


async def list_prices(request: web.Request) -> web.Response:
    params = await read_params(request)
    filters: dict[str, Any] = {
        name: params.pop(name) for name in ("product", "type", "currency") if name in params
    }
    if "active" in params:
        filters["active"] = as_bool(params.pop("active"), "active")
    reject_unknown(params, ("limit", "starting_after"))
    listing = newest_first(
        all_of(CatalogPrice, "/v1/prices", params),
        keep=lambda price: all(getattr(price, name) == value for name, value in filters.items()),
    )
    return json_response(listing._export())


# -- coupons ---------------------------------------------------------------------------


def _coupon_terms(params: dict[str, Any]) -> dict[str, Any]:
    terms: dict[str, Any] = {}
    has_amount, has_percent = "amount_off" in params, "percent_off" in params
    if has_amount == has_percent:
        raise StripeApiError(
            400, "Coupons must have either an amount_off or a percent_off.", param="amount_off"
        )
    if has_amount:
        terms["amount_off"] = as_int(params["amount_off"], "amount_off", 1)
        terms["currency"] = str(require(params, "currency", "currency")).lower()
    else:
        try:
            percent = float(params["percent_off"])
        except (TypeError, ValueError):
            raise StripeApiError(
                400, f"Invalid decimal: {params['percent_off']}", param="percent_off"
            ) from None
        if not 0 < percent <= 100:
            raise StripeApiError(
                400, "Invalid percent_off: must be between 0 and 100", param="percent_off"
            )
        terms["percent_off"] = percent
    duration = params.get("duration", "once")
    if duration not in ("once", "repeating", "forever"):
        raise StripeApiError(
            400, "Invalid duration: must be one of forever, once, or repeating", param="duration"
        )
    terms["duration"] = duration
    if duration == "repeating":
        if "duration_in_months" not in params:
            raise StripeApiError(
                400,
                "You must specify duration_in_months when duration is repeating",
                param="duration_in_months",
            )
        terms["duration_in_months"] = as_int(params["duration_in_months"], "duration_in_months", 1)
    elif "duration_in_months" in params:
        raise StripeApiError(
            400,
            "You may only specify duration_in_months when duration is repeating",
            param="duration_in_months",
        )
    if "redeem_by" in params:
        redeem_by = as_int(params["redeem_by"], "redeem_by", 1)
        if redeem_by <= _now():
            raise StripeApiError(400, "Invalid redeem_by: must be in the future", param="redeem_by")
        terms["redeem_by"] = redeem_by
    if "max_redemptions" in params:
        terms["max_redemptions"] = as_int(params["max_redemptions"], "max_redemptions", 1)
    return terms


async def create_coupon(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(
        params,
        (
            "id",
            "name",
            "metadata",
            "amount_off",
            "currency",
            "percent_off",
            "duration",
            "duration_in_months",
            "redeem_by",
            "max_redemptions",
        ),
    )
    terms = _coupon_terms(params)
    coupon_id = str(params.get("id") or random_id(8))
    if store.get(f"coupon:{coupon_id}") is not None:
        raise StripeApiError(
            400, "Coupon already exists.", param="id", code="resource_already_exists"
        )
    coupon = CatalogCoupon(
        coupon_id, terms, params.get("name"), updated_metadata({}, params.get("metadata", {}))
    )
    emit("coupon.created", coupon)
    return json_response(coupon._export())


async def update_coupon(request: web.Request) -> web.Response:
    """Only a coupon's name and metadata change; its terms are fixed once created."""
    coupon = find(CatalogCoupon, request.match_info["id"])
    params = await read_params(request)
    reject_unknown(params, ("name", "metadata"))
    changes: dict[str, Any] = {}
    if "name" in params:
        changes["name"] = params["name"] or None
    if "metadata" in params:
        changes["metadata"] = updated_metadata(coupon.metadata, params["metadata"])
    previous = apply_changes(coupon, changes)
    if previous:
        emit("coupon.updated", coupon, previous)
    return json_response(coupon._export())


async def retrieve_coupon(request: web.Request) -> web.Response:
    return json_response(find(CatalogCoupon, request.match_info["id"])._export())


async def delete_coupon(request: web.Request) -> web.Response:
    """Customers with the coupon keep their discounts; no new ones can use it."""
    coupon = find(CatalogCoupon, request.match_info["id"])
    del store[f"coupon:{coupon.id}"]
    emit("coupon.deleted", coupon)
    return json_response({"id": coupon.id, "object": "coupon", "deleted": True})


def _now() -> int:
    return int(time.time())


ROUTES: Routes = [
    ("POST", "/v1/products", create_product),
    ("GET", "/v1/products", list_products),
    ("GET", "/v1/products/{id}", retrieve_product),
    ("POST", "/v1/products/{id}", update_product),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices", list_prices),
    ("GET", "/v1/prices/{id}", retrieve_price),
    ("POST", "/v1/prices/{id}", update_price),
    ("POST", "/v1/coupons", create_coupon),
    ("GET", "/v1/coupons/{id}", retrieve_coupon),
    ("POST", "/v1/coupons/{id}", update_coupon),
    ("DELETE", "/v1/coupons/{id}", delete_coupon),
]
