"""The WebhookEndpoint API (missing from localstripe); each account sees its own."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from localstripe.resources import StripeObject, random_id, store

from .common import (
    Routes,
    all_of,
    as_bool,
    as_str_list,
    as_url,
    newest_first,
    read_params,
    reject_unknown,
    require,
    updated_metadata,
)
from .context import current
from .errors import MissingObject, StripeApiError, json_response

# Stripe refuses more than 16 test-mode endpoints per account; Billow reports it.
MAX_ENDPOINTS = 16
_EVENT_TYPE = re.compile(r"^\*$|^[a-z0-9_]+(\.[a-z0-9_]+)+$")


class WebhookEndpoint(StripeObject):
    object = "webhook_endpoint"
    _id_prefix = "we_"

    def __init__(self, account: str | None, params: dict[str, Any]) -> None:
        super().__init__(id=self._id_prefix + random_id(24))
        self._account = account
        self._secret = "whsec_" + random_id(32)
        self.api_version = params.get("api_version")
        self.application = None
        self.description = params.get("description")
        self.enabled_events = params["enabled_events"]
        self.metadata = params["metadata"]
        self.status = "enabled"
        self.url = params["url"]

    def _accepts(self, event_type: str) -> bool:
        return self.status == "enabled" and (
            "*" in self.enabled_events or event_type in self.enabled_events
        )


def endpoints_for(account: str | None, event_type: str) -> list[WebhookEndpoint]:
    """The account's enabled endpoints subscribed to ``event_type``, oldest first."""
    return [
        obj
        for obj in store.of(account).values()
        if isinstance(obj, WebhookEndpoint) and obj._accepts(event_type)
    ]


def _enabled_events(value: Any) -> list[str]:
    events = as_str_list(value, "enabled_events")
    if not events:
        raise StripeApiError(400, "Missing required param: enabled_events.", param="enabled_events")
    for index, name in enumerate(events):
        if not _EVENT_TYPE.match(name):
            param = f"enabled_events[{index}]"
            raise StripeApiError(400, f"Invalid {param}: unknown event type {name}", param=param)
    return events


def _own(endpoint_id: str) -> WebhookEndpoint:
    endpoint = store.get(WebhookEndpoint.object + ":" + endpoint_id)
    if not isinstance(endpoint, WebhookEndpoint):
        raise MissingObject(WebhookEndpoint.object, endpoint_id)
    return endpoint


async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("url", "enabled_events", "api_version", "description", "metadata"))
    owned = (isinstance(obj, WebhookEndpoint) for obj in store.values())
    if sum(owned) >= MAX_ENDPOINTS:
        raise StripeApiError(
            400, f"You have reached the maximum of {MAX_ENDPOINTS} test webhook endpoints."
        )
    endpoint = WebhookEndpoint(
        current().account,
        {
            "url": as_url(require(params, "url"), "url"),
            "enabled_events": _enabled_events(require(params, "enabled_events")),
            "api_version": params.get("api_version"),
            "description": params.get("description"),
            "metadata": updated_metadata({}, params.get("metadata", {})),
        },
    )
    # Like Stripe, the signing secret is shown once, when the endpoint is created.
    return json_response({**endpoint._export(expand=expand), "secret": endpoint._secret})


async def retrieve(request: web.Request) -> web.Response:
    params = await read_params(request)
    return json_response(_own(request.match_info["id"])._export(expand=params.get("expand")))


async def update(request: web.Request) -> web.Response:
    endpoint = _own(request.match_info["id"])
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("url", "enabled_events", "disabled", "description", "metadata"))
    if "url" in params:
        endpoint.url = as_url(params["url"], "url")
    if "enabled_events" in params:
        endpoint.enabled_events = _enabled_events(params["enabled_events"])
    if "disabled" in params:
        endpoint.status = "disabled" if as_bool(params["disabled"], "disabled") else "enabled"
    if "description" in params:
        endpoint.description = params["description"] or None
    if "metadata" in params:
        endpoint.metadata = updated_metadata(endpoint.metadata, params["metadata"])
    return json_response(endpoint._export(expand=expand))


async def delete(request: web.Request) -> web.Response:
    endpoint = _own(request.match_info["id"])
    return json_response(WebhookEndpoint._api_delete(endpoint.id)._export())


async def list_all(request: web.Request) -> web.Response:
    params = await read_params(request)
    expand = params.pop("expand", None)
    reject_unknown(params, ("limit", "starting_after"))
    endpoints = newest_first(all_of(WebhookEndpoint, "/v1/webhook_endpoints", params))
    return json_response(endpoints._export(expand=expand))


ROUTES: Routes = [
    ("POST", "/v1/webhook_endpoints", create),
    ("GET", "/v1/webhook_endpoints", list_all),
    ("GET", "/v1/webhook_endpoints/{id}", retrieve),
    ("POST", "/v1/webhook_endpoints/{id}", update),
    ("DELETE", "/v1/webhook_endpoints/{id}", delete),
]
