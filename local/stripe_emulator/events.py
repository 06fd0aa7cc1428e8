"""Events: Stripe's fields, per-account attribution, and the account-scoped event API."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from localstripe.resources import Event

from .common import Routes, newest_first
from .context import current
from .errors import json_response, missing_object
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


async def list_events(request: web.Request) -> web.Response:
    """localstripe's list (same filters), but newest first and only this account's events."""
    params = unflatten_data(request.query)
    expand = params.pop("expand", None)
    account = current().account
    events = newest_first(
        Event._api_list_all("/v1/events", **params),
        keep=lambda event: getattr(event, "_account", None) == account,
    )
    return json_response(events._export(expand=expand))


async def retrieve_event(request: web.Request) -> web.Response:
    event_id = request.match_info["id"]
    event = Event._api_retrieve(event_id)
    if getattr(event, "_account", None) != current().account:
        raise missing_object("event", event_id)
    expand = unflatten_data(request.query).pop("expand", None)
    return json_response(event._export(expand=expand))


ROUTES: Routes = [
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", retrieve_event),
]
