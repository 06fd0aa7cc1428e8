"""Events: Stripe's fields, per-account attribution, and the account-scoped event API."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from localstripe.resources import Event, store

from .common import Routes, as_bool, as_int, as_str_list, read_params, reject_unknown
from .context import current
from .errors import MissingObject, StripeApiError, json_response
from .normalise import normalise
from .upstream import unflatten_data

# Used when a request names no Stripe-Version (the SDK always sends one).
DEFAULT_API_VERSION = "2025-09-30.clover"


def schedule_webhook(event: Any) -> None:
    """Stand-in for localstripe's ``schedule_webhook`` (which sleeps 1 s and ignores accounts).

    Stamps the fields real events carry, freezes a normalised copy of the object (so
    later changes to it do not leak into the event) and hands the event to the current
    request's delivery hub, which sends it to the account's endpoints.
    """
    ctx = current()
    event.api_version = ctx.api_version or DEFAULT_API_VERSION
    event.request = {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key}
    event.data = normalise(event.data)
    event.pending_webhooks = 0
    event._account = ctx.account
    if ctx.sink is not None:
        ctx.sink.publish(event)


def emit(event_type: str, obj: Any, previous_attributes: dict[str, Any] | None = None) -> None:
    """Create and deliver an event localstripe itself does not emit."""
    event = Event(event_type, obj)
    if previous_attributes:
        event.data["previous_attributes"] = previous_attributes
    schedule_webhook(event)


_LIST_PARAMS = (
    "type",
    "types",
    "created",
    "delivery_success",
    "limit",
    "starting_after",
    "ending_before",
)
_RANGE = ("gt", "gte", "lt", "lte")
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
MAX_TYPES = 20


def _type_filter(params: dict[str, Any]) -> Callable[[Any], bool]:
    """``type`` (one type, ``*`` a wildcard: ``charge.*``) or ``types`` (exact types)."""
    if "type" in params and "types" in params:
        raise StripeApiError(
            400, "You may only specify one of these parameters: type, types.", param="types"
        )
    if "types" in params:
        wanted = as_str_list(params["types"], "types")
        if len(wanted) > MAX_TYPES:
            raise StripeApiError(
                400, f"Invalid array: types can have at most {MAX_TYPES} items", param="types"
            )
        return lambda event: event.type in wanted
    if "type" in params:
        pattern = params["type"]
        if not isinstance(pattern, str):
            raise StripeApiError(400, "Invalid string: type", param="type")
        matcher = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
        return lambda event: matcher.fullmatch(event.type) is not None
    return lambda event: True


def _created_filter(value: Any) -> Callable[[Any], bool]:
    """``created`` as a timestamp, or a range of ``gt``/``gte``/``lt``/``lte`` bounds."""
    if value is None:
        return lambda event: True
    if not isinstance(value, dict):
        exact = as_int(value, "created")
        return lambda event: event.created == exact
    reject_unknown(value, _RANGE, "created")
    bounds = [(_COMPARE[name], as_int(bound, f"created[{name}]")) for name, bound in value.items()]
    return lambda event: all(compare(event.created, bound) for compare, bound in bounds)


def _delivery_filter(value: Any) -> Callable[[Any], bool]:
    """``delivery_success``: every webhook delivered (true), or some still pending or
    given up on (false)."""
    if value is None:
        return lambda event: True
    delivered = as_bool(value, "delivery_success")
    return lambda event: (event.pending_webhooks == 0) == delivered


def _limit(value: Any) -> int:
    limit = as_int(value if value is not None else 10, "limit", 1)
    if limit > 100:
        raise StripeApiError(
            400,
            f"This value must be less than or equal to 100 (it currently is '{limit}').",
            param="limit",
        )
    return limit


async def list_events(request: web.Request) -> web.Response:
    """The account's events, newest first, paged and filtered as Stripe's ``GET /v1/events``.

    A cursor (``starting_after``, ``ending_before``) is a position in the account's
    whole event history, so paging with a filter continues from the cursor even when
    the cursor itself does not match the filter.
    """
    params = await read_params(request)
    params.pop("expand", None)
    reject_unknown(params, _LIST_PARAMS)
    if "starting_after" in params and "ending_before" in params:
        raise StripeApiError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="ending_before",
        )
    filters = (
        _type_filter(params),
        _created_filter(params.get("created")),
        _delivery_filter(params.get("delivery_success")),
    )
    limit = _limit(params.get("limit"))
    history = [event for event in reversed(store.values()) if isinstance(event, Event)]
    cursor_name = "ending_before" if "ending_before" in params else "starting_after"
    cursor = params.get(cursor_name)
    if cursor is not None:
        position = next((i for i, event in enumerate(history) if event.id == cursor), None)
        if position is None:
            raise MissingObject("event", str(cursor), param=cursor_name)
        history = history[:position] if cursor_name == "ending_before" else history[position + 1 :]
    matching = [event for event in history if all(keep(event) for keep in filters)]
    # Going backwards (ending_before), the page is the one just before the cursor.
    page = matching[-limit:] if cursor_name == "ending_before" and cursor else matching[:limit]
    return json_response(
        {
            "object": "list",
            "data": [event._export() for event in page],
            "has_more": len(matching) > limit,
            "url": "/v1/events",
        }
    )


async def retrieve_event(request: web.Request) -> web.Response:
    event_id = request.match_info["id"]
    event = Event._api_retrieve(event_id)
    expand = unflatten_data(request.query).pop("expand", None)
    return json_response(event._export(expand=expand))


ROUTES: Routes = [
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", retrieve_event),
]
