"""Stripe Billing's invoices for subscriptions, and test clocks that make time pass.

A subscription's first invoice is made when it is created (``subscription_create``),
and each renewal's when its period ends (``subscription_cycle``). Each is created as a
draft, finalized and charged to the subscription's card, else the customer's default,
with the events Stripe sends (``invoice.created``, ``invoice.finalized``, then
``invoice.paid`` or ``invoice.payment_failed``). A renewal stays a draft
for Stripe's hour of grace and is finalized and charged once the clock passes it. Each
charge is an off-session PaymentIntent on the card (its events included). Proration
items of a Price change are billed with the next invoice. A subscription with automatic
tax has exclusive tax on every line of its invoices (prorations included), computed
from the customer's address when the invoice is made (see ``tax``).

Time is the real clock, except for customers created on a test clock
(``/v1/test_helpers/test_clocks``): their subscriptions live on the clock's frozen
time, and advancing the clock renews (or ends, at ``cancel_at``) whatever falls due.
"""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aiohttp import web
from localstripe.resources import (
    Customer,
    PaymentIntent,
    PaymentMethod,
    StripeObject,
    random_id,
    store,
)

from . import upstream
from .common import Handler, Routes, as_int, find, read_params, reject_unknown, require
from .errors import StripeApiError, json_response
from .events import emit
from .payments import confirm_payment_intent
from .tax import DISABLED_INVOICE_TAX, location_invalid, tax_invoice_lines, total_taxes


def _legacy(method: str, path: str) -> Handler:
    return next(h for m, p, h in upstream.routes() if (m, p) == (method, path))


class TestClock(StripeObject):
    object = "test_helpers.test_clock"
    _id_prefix = "clock_"

    def __init__(self, frozen_time: int, name: str | None):
        super().__init__()
        self.frozen_time = frozen_time
        self.name = name
        self.status = "ready"
        self.deletes_after = frozen_time + 30 * 24 * 3600
        self.status_details: dict[str, Any] = {}


def add_interval(moment: int, interval: str, count: int) -> int:
    """``moment`` plus ``count`` intervals; a month-end day is clamped, as Stripe does."""
    at = datetime.fromtimestamp(moment, UTC)
    if interval in ("day", "week"):
        return int((at + timedelta(days=count * (7 if interval == "week" else 1))).timestamp())
    months = count * (12 if interval == "year" else 1)
    year, month = divmod(at.month - 1 + months, 12)
    year += at.year
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return int(at.replace(year=year, month=month + 1, day=day).timestamp())


def now_for(customer_id: str) -> int:
    """The customer's time: its test clock's, else the real one."""
    customer = store.get(f"customer:{customer_id}")
    clock_id = getattr(customer, "test_clock", None) if customer is not None else None
    clock = store.get(f"test_helpers.test_clock:{clock_id}") if clock_id else None
    return int(clock.frozen_time) if clock is not None else int(time.time())


def invoice_line(
    subscription: Any,
    price: Any,
    amount: int,
    period: tuple[int, int],
    proration: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """One line of a subscription's invoice: a period of its Price, or a proration."""
    return {
        "id": "il_" + random_id(14),
        "object": "line_item",
        "amount": amount,
        "currency": price.currency,
        "description": description or f"1 × {price.product} (at {price.unit_amount} / period)",
        "discountable": not proration,
        "metadata": {},
        "period": {"start": period[0], "end": period[1]},
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price.id, "product": price.product},
            "unit_amount_decimal": str(price.unit_amount),
        },
        "quantity": 1,
        "taxes": [],
        "parent": {
            "type": "subscription_item_details",
            "subscription_item_details": {
                "subscription": subscription.id,
                "subscription_item": subscription._item["id"],
                "proration": proration,
            },
        },
    }


class SubscriptionInvoice(StripeObject):
    object = "invoice"
    _id_prefix = "in_"

    def __init__(
        self,
        subscription: Any,
        currency: str,
        lines: list[dict[str, Any]],
        billing_reason: str,
        now: int,
        automatic_tax: dict[str, Any],
    ):
        super().__init__()
        self.created = now
        account = self._account or "acct_emulator"
        self.account_country = "US"
        self.amount_paid = 0
        self.attempt_count = 0
        self.attempted = False
        self.auto_advance = True
        self.automatic_tax = automatic_tax
        self.billing_reason = billing_reason
        self.collection_method = "charge_automatically"
        self.currency = currency
        self.customer = subscription.customer
        self.default_payment_method = None
        self.description = None
        self.discounts: list[Any] = []
        self.due_date = None
        self.hosted_invoice_url = f"https://invoice.stripe.com/i/{account}/test_{self.id}"
        self.invoice_pdf = f"{self.hosted_invoice_url}/pdf"
        self.last_finalization_error: dict[str, Any] | None = None
        self.lines: dict[str, Any] = {
            "object": "list",
            "data": lines,
            "has_more": False,
            "url": f"/v1/invoices/{self.id}/lines",
        }
        self.metadata: dict[str, str] = {}
        self.number: str | None = None
        self.parent: dict[str, Any] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "subscription": subscription.id,
                "metadata": dict(subscription.metadata),
            },
        }
        self.period_start = now
        self.period_end = now
        self.status = "draft"
        self.automatically_finalizes_at: int | None = now + grace_seconds(self._account)
        self.status_transitions: dict[str, int | None] = {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        }
        self.payments: dict[str, Any] = {"object": "list", "data": []}
        self._total_up(lines)

    def _total_up(self, lines: list[dict[str, Any]]) -> None:
        """The invoice's totals from its lines (their discounts and taxes)."""
        subtotal = sum(int(line["amount"]) for line in lines)
        discounts = [entry for line in lines for entry in line.get("discount_amounts") or []]
        excluding_tax = subtotal - sum(int(entry["amount"]) for entry in discounts)
        taxes = total_taxes(lines)
        amount = excluding_tax + sum(tax["amount"] for tax in taxes)
        self.amount_due = amount
        self.amount_remaining = amount - self.amount_paid
        self.subtotal = subtotal
        self.subtotal_excluding_tax = subtotal
        self.total = amount
        self.total_excluding_tax = excluding_tax
        self.total_discount_amounts: list[Any] = _by_discount(discounts)
        self.total_taxes = taxes


def _by_discount(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An invoice's ``total_discount_amounts``: its lines' discounts summed per discount."""
    totals: dict[str, int] = {}
    for entry in entries:
        totals[entry["discount"]] = totals.get(entry["discount"], 0) + int(entry["amount"])
    return [{"amount": amount, "discount": key} for key, amount in totals.items()]


_NUMBERS: dict[str, int] = {}


def _card_for(subscription: Any) -> Any | None:
    chosen = subscription.default_payment_method
    if chosen is None:
        customer = store.get(f"customer:{subscription.customer}")
        chosen = (getattr(customer, "invoice_settings", None) or {}).get("default_payment_method")
    return store.get(f"{PaymentMethod.object}:{chosen}") if chosen else None


GRACE_S = 3600
"""Stripe finalizes a renewal's draft about an hour after making it (its default)."""
_GRACE_BY_ACCOUNT: dict[str, int] = {}


def set_grace_hours(account: str, hours: int) -> None:
    """The account's "finalize invoices after" setting (Stripe's dashboard)."""
    _GRACE_BY_ACCOUNT[account] = hours * 3600


def grace_seconds(account: str | None) -> int:
    return _GRACE_BY_ACCOUNT.get(account or "", GRACE_S)


def apply_discounts(
    subscription: Any, lines: list[dict[str, Any]], now: int
) -> list[dict[str, Any]]:
    """Take the subscription's discounts off its invoice's discountable lines (each
    line's ``discount_amounts``); returns the invoice's ``total_discount_amounts``. A
    ``once`` discount is spent by this invoice."""
    totals: list[dict[str, Any]] = []
    for line in lines:
        line.setdefault("discount_amounts", [])
    kept = []
    for applied in subscription.discounts:
        if applied["end"] is not None and applied["end"] <= now:
            continue
        coupon = store.get(f"coupon:{applied['source']['coupon']}")
        remaining = int(coupon.amount_off) if coupon.amount_off is not None else None
        taken = 0
        for line in lines:
            left = int(line["amount"]) - sum(d["amount"] for d in line["discount_amounts"])
            if not line.get("discountable", True) or left <= 0:
                continue
            if remaining is not None:
                off = min(remaining, left)
                remaining -= off
            else:
                exact = Decimal(left) * Decimal(str(coupon.percent_off)) / 100
                off = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            if off:
                line["discount_amounts"].append({"amount": off, "discount": applied["id"]})
                taken += off
        totals.append({"amount": taken, "discount": applied["id"]})
        if coupon.duration != "once":
            kept.append(applied)
    subscription.discounts = kept
    return totals


def bill_period(
    subscription: Any, period: tuple[int, int], billing_reason: str, amount: int | None = None
) -> SubscriptionInvoice:
    """The invoice for one period. A subscription's first is finalized and charged at
    once; a renewal stays a draft for the grace period (``finalize_due_drafts``)."""
    price = store.get(f"price:{subscription._item['price']}")
    now = now_for(subscription.customer)
    lines = [
        invoice_line(subscription, price, price.unit_amount if amount is None else amount, period),
        *subscription._pending_prorations,
    ]
    subscription._pending_prorations = []
    discounted = apply_discounts(subscription, lines, now)
    automatic_tax = (
        tax_invoice_lines(lines, subscription.customer)
        if subscription.automatic_tax["enabled"]
        else DISABLED_INVOICE_TAX
    )
    invoice = SubscriptionInvoice(
        subscription, price.currency, lines, billing_reason, now, dict(automatic_tax)
    )
    invoice.discounts = [entry["discount"] for entry in discounted]
    subscription.latest_invoice = invoice.id
    emit("invoice.created", invoice)
    if billing_reason == "subscription_create":
        finalize_and_charge(invoice, subscription, now)
    return invoice


def finalize_and_charge(invoice: SubscriptionInvoice, subscription: Any, now: int) -> None:
    """Finalize (a number, ``open``) and charge the card through a PaymentIntent, as
    Stripe does: ``invoice.paid``, or ``invoice.payment_failed`` with the subscription
    ``past_due``.

    An invoice whose automatic tax could not place the customer is not finalized
    (``invoice.finalization_failed``) and stays a draft, no longer advanced."""
    if invoice.automatic_tax["status"] == "requires_location_inputs":
        invoice.auto_advance = False
        invoice.last_finalization_error = location_invalid("customer").body["error"]
        emit("invoice.finalization_failed", invoice)
        return
    invoice.automatically_finalizes_at = None
    prefix = subscription.customer[-8:].upper()
    _NUMBERS[prefix] = _NUMBERS.get(prefix, 0) + 1
    invoice.number = f"{prefix}-{_NUMBERS[prefix]:04d}"
    invoice.status = "open"
    invoice.status_transitions["finalized_at"] = now
    emit("invoice.finalized", invoice)
    card = _card_for(subscription)
    invoice.attempted = True
    invoice.attempt_count += 1
    paid = card is not None and _charged(invoice, card)
    if not paid:
        emit("invoice.payment_failed", invoice)
        if subscription.status != "past_due":
            subscription.status = "past_due"
            emit("customer.subscription.updated", subscription, {"status": "active"})
        return
    invoice.status = "paid"
    invoice.amount_paid, invoice.amount_remaining = invoice.amount_due, 0
    invoice.status_transitions["paid_at"] = now
    emit("invoice.paid", invoice)
    emit("invoice.payment_succeeded", invoice)


def _charged(invoice: SubscriptionInvoice, card: Any) -> bool:
    """One off-session PaymentIntent for the amount due, on ``card``."""
    payment_intent = PaymentIntent(
        amount=invoice.amount_due,
        currency=invoice.currency,
        customer=invoice.customer,
        metadata={},
    )
    payment_intent.description = f"Subscription invoice {invoice.number}"
    payment_intent.payment_method_types = ["card"]
    emit("payment_intent.created", payment_intent)
    payment_intent.payment_method = card.id
    try:
        confirm_payment_intent(payment_intent, fail_on_action=True)
    except StripeApiError:
        return False
    invoice.payments = {
        "object": "list",
        "data": [{"payment": {"type": "payment_intent", "payment_intent": payment_intent.id}}],
    }
    return payment_intent.status == "succeeded"


def finalize_due_drafts(subscriptions: list[Any], moment: int) -> None:
    """Renewal drafts whose grace period is over by ``moment``, finalized and charged."""
    for sub in subscriptions:
        draft = store.get(f"invoice:{sub.latest_invoice}") if sub.latest_invoice else None
        if not isinstance(draft, SubscriptionInvoice) or draft.status != "draft":
            continue
        if not draft.auto_advance:  # its finalization failed: Stripe waits for a fix
            continue
        due = draft.automatically_finalizes_at
        if due is not None and due <= moment:
            finalize_and_charge(draft, sub, due)


# -- test clocks -----------------------------------------------------------------------


async def create_clock(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(params, ("frozen_time", "name"))
    clock = TestClock(as_int(require(params, "frozen_time"), "frozen_time"), params.get("name"))
    return json_response(clock._export())


async def retrieve_clock(request: web.Request) -> web.Response:
    return json_response(find(TestClock, request.match_info["id"])._export())


async def advance_clock(request: web.Request) -> web.Response:
    """Move the clock forward; every subscription on it renews (or ends) as it would
    have meanwhile, period after period."""
    clock = find(TestClock, request.match_info["id"])
    params = await read_params(request)
    reject_unknown(params, ("frozen_time",))
    target = as_int(require(params, "frozen_time"), "frozen_time")
    if target <= clock.frozen_time:
        raise StripeApiError(
            400,
            "The frozen_time must be after the test clock's current frozen_time.",
            param="frozen_time",
        )
    subscriptions = [
        obj
        for key, obj in list(store.items())
        if key.startswith("subscription:")
        and hasattr(obj, "_item")  # a subscription on Prices (not localstripe's)
        and getattr(store.get(f"customer:{obj.customer}"), "test_clock", None) == clock.id
    ]
    while True:
        finalize_due_drafts(subscriptions, clock.frozen_time)
        due = [
            sub
            for sub in subscriptions
            if sub.status in ("active", "past_due")
            and min(sub._item["current_period_end"], sub.cancel_at or target + 1) <= target
        ]
        if not due:
            break
        sub = min(due, key=lambda s: min(s._item["current_period_end"], s.cancel_at or target))
        end = sub._item["current_period_end"]
        if sub.cancel_at is not None and sub.cancel_at <= end:
            clock.frozen_time = sub.cancel_at
            sub.status = "canceled"
            sub.canceled_at = sub.ended_at = sub.cancel_at
            emit("customer.subscription.deleted", sub)
            continue
        clock.frozen_time = end
        recurring = store.get(f"price:{sub._item['price']}").recurring
        following = add_interval(end, recurring["interval"], recurring["interval_count"])
        previous = {"items": sub.items}
        sub._item["current_period_start"], sub._item["current_period_end"] = end, following
        emit("customer.subscription.updated", sub, previous)
        bill_period(sub, (end, following), "subscription_cycle")
    clock.frozen_time = target
    finalize_due_drafts(subscriptions, target)
    return json_response(clock._export())


async def create_customer(request: web.Request) -> web.Response:
    """localstripe's customer, on a test clock when asked (Stripe's ``test_clock``)."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    clock_id = params.pop("test_clock", None)
    if clock_id is not None:
        find(TestClock, str(clock_id), param="test_clock")
    customer = Customer._api_create(**params)
    customer.test_clock = clock_id
    return json_response(customer._export(expand=expand))


async def retrieve_invoice(request: web.Request) -> web.Response:
    invoice = store.get(f"invoice:{request.match_info['id']}")
    if not isinstance(invoice, SubscriptionInvoice):
        return await _legacy("GET", "/v1/invoices/{id}")(request)  # type: ignore[return-value]
    return json_response(invoice._export())


ROUTES: Routes = [
    ("POST", "/v1/test_helpers/test_clocks", create_clock),
    ("GET", "/v1/test_helpers/test_clocks/{id}", retrieve_clock),
    ("POST", "/v1/test_helpers/test_clocks/{id}/advance", advance_clock),
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/invoices/{id}", retrieve_invoice),
]
