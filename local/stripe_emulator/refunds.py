"""Refunds the way Billow issues them for credit notes: by PaymentIntent, possibly partial.

localstripe records refunds but takes neither ``reason`` nor a partial amount's limits
into account, leaves ``payment_intent`` empty when refunding by charge and sends no
events; these handlers check what Stripe checks, with Stripe's messages, and send
``charge.refunded`` and ``refund.created``. Card refunds succeed at once, as in test mode.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from localstripe.resources import Charge, PaymentIntent, Refund

from .common import (
    Routes,
    all_of,
    as_int,
    find,
    newest_first,
    read_params,
    reject_unknown,
    updated_metadata,
)
from .errors import StripeApiError, json_response
from .events import emit
from .money import display

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def _refundable_charge(params: dict[str, Any]) -> Any:
    """The captured charge a refund request points at, through its PaymentIntent or not."""
    if "payment_intent" not in params and "charge" not in params:
        raise StripeApiError(
            400,
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
        )
    charge = find(Charge, params["charge"], "charge") if "charge" in params else None
    if "payment_intent" in params:
        payment_intent = find(PaymentIntent, params["payment_intent"], "payment_intent")
        latest = payment_intent.latest_charge
        if latest is None or latest.status != "succeeded" or not latest.captured:
            raise StripeApiError(
                400,
                f"This PaymentIntent ({payment_intent.id}) does not have a successful charge "
                "to refund.",
                param="payment_intent",
            )
        if charge is not None and charge.id != latest.id:
            raise StripeApiError(
                400,
                f"Charge {charge.id} does not belong to PaymentIntent {payment_intent.id}.",
                param="charge",
            )
        charge = latest
    assert charge is not None
    if charge.status != "succeeded" or not charge.captured:
        raise StripeApiError(
            400, f"Charge {charge.id} has not been captured and cannot be refunded.", param="charge"
        )
    return charge


async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("payment_intent", "charge", "amount", "reason", "metadata"))
    charge = _refundable_charge(params)
    reason = params.get("reason")
    if reason is not None and reason not in REASONS:
        raise StripeApiError(
            400, f"Invalid reason: must be one of {', '.join(REASONS)}", param="reason"
        )
    remaining = charge.amount - charge.amount_refunded
    if remaining <= 0:
        raise StripeApiError(
            400, f"Charge {charge.id} has already been refunded.", code="charge_already_refunded"
        )
    amount = as_int(params.get("amount", remaining), "amount", 1)
    if amount > remaining:
        raise StripeApiError(
            400,
            f"Refund amount ({display(amount, charge.currency)}) is greater than unrefunded "
            f"amount on charge ({display(remaining, charge.currency)})",
            param="amount",
        )
    refund = Refund(
        charge=charge.id,
        amount=amount,
        metadata=updated_metadata({}, params.get("metadata", {})),
    )
    refund.payment_intent = charge.payment_intent
    refund.reason = reason
    refund.destination_details = {"type": "card", "card": {"type": "refund"}}
    emit("charge.refunded", charge)
    emit("refund.created", refund)
    return json_response(refund._export(expand=expand))


async def list_all(request: web.Request) -> web.Response:
    """The account's refunds, newest first, optionally only a charge's or PaymentIntent's."""
    params = await read_params(request)
    expand = params.pop("expand", None)
    filters = {name: params.pop(name) for name in ("charge", "payment_intent") if name in params}
    reject_unknown(params, ("limit", "starting_after"))
    listing = newest_first(
        all_of(Refund, "/v1/refunds", params),
        keep=lambda refund: all(getattr(refund, name) == value for name, value in filters.items()),
    )
    return json_response(listing._export(expand=expand))


ROUTES: Routes = [
    ("POST", "/v1/refunds", create),
    ("GET", "/v1/refunds", list_all),
]
