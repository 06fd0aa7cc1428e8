"""Promotion codes (the customer-facing codes of a coupon) and the discounts they give.

A promotion code names one coupon of the catalog (``catalog.CatalogCoupon``). Checkout's
page takes one when the session allows promotion codes; the subscription it makes then
carries a discount, which takes its share off the discountable lines of the invoices it
covers, before tax: only the first for a ``once`` coupon, those within
``duration_in_months`` for a ``repeating`` one, all of them for ``forever``. An amount
off is taken from the lines in order; a percentage off is rounded half up per line.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from localstripe.resources import StripeObject, random_id, store

from .billing import add_interval
from .catalog import CatalogCoupon
from .common import (
    Routes,
    all_of,
    as_bool,
    as_dict,
    as_int,
    find,
    newest_first,
    read_params,
    reject_unknown,
    updated_metadata,
)
from .errors import StripeApiError, json_response


class PromotionCode(StripeObject):
    object = "promotion_code"
    _id_prefix = "promo_"

    def __init__(self, coupon: CatalogCoupon, code: str, fields: dict[str, Any]) -> None:
        super().__init__()
        self.active = fields.get("active", True)
        self.code = code
        self.created = int(time.time())
        self.customer = fields.get("customer")
        self.expires_at = fields.get("expires_at")
        self.max_redemptions = fields.get("max_redemptions")
        self.metadata = fields.get("metadata", {})
        self.restrictions = {
            "first_time_transaction": False,
            "minimum_amount": None,
            "minimum_amount_currency": None,
        }
        self.times_redeemed = 0
        self.promotion = {"coupon": coupon.id, "type": "coupon"}
        self.customer_account = None

    def _redeemable(self, customer_id: str) -> bool:
        coupon = store.get(f"coupon:{self.promotion['coupon']}")
        return (
            self.active
            and isinstance(coupon, CatalogCoupon)
            and coupon.valid
            and (self.expires_at is None or self.expires_at > time.time())
            and (self.max_redemptions is None or self.times_redeemed < self.max_redemptions)
            and self.customer in (None, customer_id)
        )


def find_redeemable(code: str, customer_id: str) -> PromotionCode | None:
    """The active promotion code a customer typed (codes are not case-sensitive)."""
    wanted = code.strip().upper()
    return next(
        (
            obj
            for obj in store.values()
            if isinstance(obj, PromotionCode)
            and obj.code.upper() == wanted
            and obj._redeemable(customer_id)
        ),
        None,
    )


def discount(
    promotion: PromotionCode, customer: str, subscription: str, start: int
) -> dict[str, Any]:
    """The discount a redeemed promotion code puts on a subscription."""
    coupon = find(CatalogCoupon, promotion.promotion["coupon"])
    promotion.times_redeemed += 1
    coupon.times_redeemed += 1
    end = (
        add_interval(start, "month", int(coupon.duration_in_months))
        if coupon.duration == "repeating"
        else None
    )
    return {
        "id": "di_" + random_id(24),
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "end": end,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": promotion.id,
        "source": {"coupon": coupon.id, "type": "coupon"},
        "start": start,
        "subscription": subscription,
        "subscription_item": None,
        "customer_account": None,
    }


# -- the API ---------------------------------------------------------------------------


def _coupon_of(params: dict[str, Any]) -> CatalogCoupon:
    if "promotion" in params:
        promotion = as_dict(params["promotion"], "promotion")
        reject_unknown(promotion, ("coupon", "type"), "promotion")
        coupon_id = promotion.get("coupon")
        param = "promotion[coupon]"
    else:
        coupon_id, param = params.get("coupon"), "coupon"
    if not coupon_id:
        raise StripeApiError(400, "Missing required param: promotion[coupon].", param=param)
    coupon = find(CatalogCoupon, str(coupon_id), param=param)
    if not coupon.valid:
        raise StripeApiError(400, f"Coupon {coupon.id} is no longer valid.", param=param)
    return coupon


async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(
        params,
        (
            "coupon",
            "promotion",
            "code",
            "active",
            "customer",
            "expires_at",
            "max_redemptions",
            "metadata",
        ),
    )
    coupon = _coupon_of(params)
    code = str(params.get("code") or random_id(8).upper())
    taken = any(
        isinstance(obj, PromotionCode) and obj.active and obj.code.upper() == code.upper()
        for obj in store.values()
    )
    if taken:
        raise StripeApiError(
            400, "An active promotion code with `code` already exists.", param="code"
        )
    fields: dict[str, Any] = {"metadata": updated_metadata({}, params.get("metadata", {}))}
    if "active" in params:
        fields["active"] = as_bool(params["active"], "active")
    for name in ("expires_at", "max_redemptions"):
        if name in params:
            fields[name] = as_int(params[name], name, 1)
    if "customer" in params:
        fields["customer"] = str(params["customer"])
    return json_response(PromotionCode(coupon, code, fields)._export())


async def retrieve(request: web.Request) -> web.Response:
    return json_response(find(PromotionCode, request.match_info["id"])._export())


async def update(request: web.Request) -> web.Response:
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, ("active", "metadata"))
    promotion = find(PromotionCode, request.match_info["id"])
    if "active" in params:
        promotion.active = as_bool(params["active"], "active")
    if "metadata" in params:
        promotion.metadata = updated_metadata(promotion.metadata, params["metadata"])
    return json_response(promotion._export())


async def list_all(request: web.Request) -> web.Response:
    params = await read_params(request)
    filters = {name: params.pop(name) for name in ("code", "coupon", "active") if name in params}
    reject_unknown(params, ("limit", "starting_after"))

    def keep(obj: Any) -> bool:
        if "code" in filters and obj.code.upper() != str(filters["code"]).upper():
            return False
        if "coupon" in filters and obj.promotion["coupon"] != filters["coupon"]:
            return False
        return "active" not in filters or obj.active == as_bool(filters["active"], "active")

    listing = newest_first(all_of(PromotionCode, "/v1/promotion_codes", params), keep=keep)
    return json_response(listing._export())


ROUTES: Routes = [
    ("POST", "/v1/promotion_codes", create),
    ("GET", "/v1/promotion_codes", list_all),
    ("GET", "/v1/promotion_codes/{id}", retrieve),
    ("POST", "/v1/promotion_codes/{id}", update),
]
