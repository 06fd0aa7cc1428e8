"""Invoice items: amounts added to a customer's draft invoice before Stripe finalizes it.

Billow adds a period's usage to a subscription's renewal while it is a draft (Stripe
keeps a renewal a draft for the account's finalization grace period, an hour unless the
account changed it). An item joins the draft as a line (``parent.type:
invoice_item_details``); the invoice's totals are worked out again with it (the
subscription's percentage discounts on discountable lines, automatic tax when the
invoice has it), and finalization charges them. Only a draft takes, changes or loses
items; a finalized invoice is Stripe's 400.

The account's grace period is set with ``POST /_config/invoice_finalization_grace``
(``controls``).
"""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aiohttp import web
from localstripe.resources import StripeObject, store

from . import upstream
from .billing import SubscriptionInvoice
from .common import (
    Routes,
    all_of,
    apply_changes,
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
from .tax import tax_invoice_lines

FIELDS = (
    "customer",
    "invoice",
    "amount",
    "currency",
    "description",
    "metadata",
    "period",
    "discountable",
    "price_data",
    "quantity",
)


class InvoiceItem(StripeObject):
    object = "invoiceitem"
    _id_prefix = "ii_"

    def __init__(self, invoice: SubscriptionInvoice, fields: dict[str, Any]) -> None:
        super().__init__()
        now = int(time.time())
        self.amount = fields["amount"]
        self.currency = invoice.currency
        self.customer = invoice.customer
        self.date = now
        self.description = fields.get("description")
        self.discountable = fields.get("discountable", True)
        self.discounts: list[Any] = []
        self.invoice = invoice.id
        self.metadata = fields.get("metadata", {})
        self.period = fields.get("period") or {"start": now, "end": now}
        self.pricing = fields.get("pricing")
        self.proration = False
        self.quantity = fields.get("quantity", 1)
        self.test_clock = None
        self.parent = None
        self.customer_account = None

    def _line(self) -> dict[str, Any]:
        """The draft's line for this item."""
        return {
            "id": "il_" + self.id.removeprefix("ii_"),
            "object": "line_item",
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "discountable": self.discountable,
            "discount_amounts": [],
            "metadata": dict(self.metadata),
            "period": dict(self.period),
            "pricing": self.pricing,
            "quantity": self.quantity,
            "taxes": [],
            "parent": {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": self.id,
                    "proration": False,
                    "subscription": None,
                },
            },
        }


async def _upstream(request: web.Request, method: str, path: str) -> web.StreamResponse:
    """localstripe's own handling: items not on a draft (pending ones)."""
    handler = next(h for m, p, h in upstream.routes() if (m, p) == (method, path))
    return await handler(request)


def _draft(invoice_id: str, customer: str | None) -> SubscriptionInvoice:
    invoice = find(SubscriptionInvoice, invoice_id, param="invoice")
    if not isinstance(invoice, SubscriptionInvoice):
        raise StripeApiError(
            400,
            "The emulator adds items to subscriptions' draft invoices only.",
            param="invoice",
        )
    if customer is not None and invoice.customer != customer:
        raise StripeApiError(
            400,
            f"The invoice {invoice.id} does not belong to the customer {customer}.",
            param="invoice",
        )
    if invoice.status != "draft":
        raise StripeApiError(
            400,
            f"You can only add invoice items to draft invoices: {invoice.id} is finalized.",
            param="invoice",
        )
    return invoice


def _amount(params: dict[str, Any], currency: str) -> tuple[int, dict[str, Any] | None, int]:
    """The item's amount, its pricing and quantity: ``amount`` as given, or ``price_data``
    (a product and a unit amount) times ``quantity``."""
    quantity = as_int(params.get("quantity", 1), "quantity", 1)
    if "price_data" in params:
        data = as_dict(params["price_data"], "price_data")
        reject_unknown(
            data, ("currency", "product", "unit_amount", "unit_amount_decimal"), "price_data"
        )
        product = require(data, "product", "price_data[product]")
        if str(data.get("currency", currency)).lower() != currency:
            raise StripeApiError(
                400, "Currency must match the invoice's.", param="price_data[currency]"
            )
        raw = data.get("unit_amount_decimal", data.get("unit_amount"))
        unit = Decimal(str(require({"u": raw}, "u", "price_data[unit_amount]")))
        amount = int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        pricing = {
            "type": "price_details",
            "price_details": {"price": None, "product": str(product)},
            "unit_amount_decimal": format(unit, "f"),
        }
        return amount, pricing, quantity
    raw_amount = require(params, "amount")
    try:
        amount = int(raw_amount)
    except (TypeError, ValueError):
        raise StripeApiError(400, f"Invalid integer: {raw_amount}", param="amount") from None
    return amount, None, quantity


def recompute(invoice: SubscriptionInvoice) -> None:
    """The draft's totals from its lines: each discountable item line takes the
    subscription's percentage discounts (a fixed amount off was spent on the lines the
    invoice was made with), tax where the invoice has automatic tax."""
    lines = invoice.lines["data"]
    sub = store.get(f"subscription:{invoice.parent['subscription_details']['subscription']}")
    for line in lines:
        item_line = line["parent"]["type"] == "invoice_item_details"
        if not item_line or not line["discountable"] or sub is None:
            continue
        line["discount_amounts"] = []
        for discount in invoice.discounts:
            applied = next((d for d in sub.discounts if d["id"] == discount), None)
            coupon = store.get(f"coupon:{applied['source']['coupon']}") if applied else None
            if coupon is not None and coupon.percent_off is not None:
                exact = Decimal(int(line["amount"])) * Decimal(str(coupon.percent_off)) / 100
                off = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
                line["discount_amounts"].append({"amount": off, "discount": discount})
    if invoice.automatic_tax.get("enabled"):
        invoice.automatic_tax = dict(tax_invoice_lines(lines, invoice.customer))
    invoice._total_up(lines)


async def create(request: web.Request) -> web.StreamResponse:
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, FIELDS)
    if "invoice" not in params:
        return await _upstream(request, "POST", "/v1/invoiceitems")  # a pending item
    customer = str(require(params, "customer"))
    invoice = _draft(str(params["invoice"]), customer)
    currency = str(params.get("currency", invoice.currency)).lower()
    if currency != invoice.currency:
        raise StripeApiError(
            400,
            f"The currency of the invoice item ({currency}) must match the invoice's "
            f"({invoice.currency}).",
            param="currency",
        )
    amount, pricing, quantity = _amount(params, invoice.currency)
    fields: dict[str, Any] = {
        "amount": amount,
        "pricing": pricing,
        "quantity": quantity,
        "description": params.get("description"),
        "metadata": updated_metadata({}, params.get("metadata", {})),
    }
    if "discountable" in params:
        fields["discountable"] = str(params["discountable"]).lower() == "true"
    if "period" in params:
        period = as_dict(params["period"], "period")
        fields["period"] = {
            "start": as_int(require(period, "start", "period[start]"), "period[start]"),
            "end": as_int(require(period, "end", "period[end]"), "period[end]"),
        }
    item = InvoiceItem(invoice, fields)
    before = {"total": invoice.total, "amount_due": invoice.amount_due}
    invoice.lines["data"].append(item._line())
    recompute(invoice)
    emit("invoiceitem.created", item)
    emit("invoice.updated", invoice, before)
    return json_response(item._export())


async def retrieve(request: web.Request) -> web.Response:
    return json_response(find(InvoiceItem, request.match_info["id"])._export())


async def update(request: web.Request) -> web.StreamResponse:
    item = find(InvoiceItem, request.match_info["id"])
    if not isinstance(item, InvoiceItem):
        return await _upstream(request, "POST", "/v1/invoiceitems/{id}")
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, ("amount", "description", "metadata", "discountable"))
    invoice = _draft(item.invoice, None)
    changes: dict[str, Any] = {}
    if "amount" in params:
        changes["amount"] = as_int(params["amount"], "amount", -(10**12))
    if "description" in params:
        changes["description"] = params["description"]
    if "metadata" in params:
        changes["metadata"] = updated_metadata(item.metadata, params["metadata"])
    if "discountable" in params:
        changes["discountable"] = str(params["discountable"]).lower() == "true"
    previous = apply_changes(item, changes)
    lines = invoice.lines["data"]
    index = next(i for i, line in enumerate(lines) if line["id"] == item._line()["id"])
    lines[index] = item._line()
    recompute(invoice)
    if previous:
        emit("invoiceitem.updated", item, previous)
    return json_response(item._export())


async def delete(request: web.Request) -> web.StreamResponse:
    item = find(InvoiceItem, request.match_info["id"])
    if not isinstance(item, InvoiceItem):
        return await _upstream(request, "DELETE", "/v1/invoiceitems/{id}")
    invoice = _draft(item.invoice, None)
    invoice.lines["data"] = [
        line for line in invoice.lines["data"] if line["id"] != item._line()["id"]
    ]
    recompute(invoice)
    store.pop(f"{InvoiceItem.object}:{item.id}", None)
    emit("invoiceitem.deleted", item)
    return json_response({"id": item.id, "object": "invoiceitem", "deleted": True})


async def list_all(request: web.Request) -> web.Response:
    params = await read_params(request)
    filters = {name: params.pop(name) for name in ("customer", "invoice") if name in params}
    reject_unknown(params, ("limit", "starting_after", "pending"))

    def keep(obj: Any) -> bool:
        return all(getattr(obj, name) == value for name, value in filters.items())

    return json_response(
        newest_first(all_of(InvoiceItem, "/v1/invoiceitems", params), keep=keep)._export()
    )


ROUTES: Routes = [
    ("POST", "/v1/invoiceitems", create),
    ("GET", "/v1/invoiceitems", list_all),
    ("GET", "/v1/invoiceitems/{id}", retrieve),
    ("POST", "/v1/invoiceitems/{id}", update),
    ("DELETE", "/v1/invoiceitems/{id}", delete),
]
