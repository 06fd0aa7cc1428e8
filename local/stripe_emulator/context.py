"""Who is asking: the per-request context that attributes events to an account.

localstripe keeps one global store and emits events from deep inside its resource
classes, with no notion of who made the request. A context variable, set by the auth
middleware for each request, lets the event hook find the account (``acct_`` id) and the
delivery hub without threading them through localstripe's call stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

from aiohttp import web

# Stripe's "req_..." id of the request being served, also echoed in its events.
REQUEST_ID = web.RequestKey("request_id", str)


class EventSink(Protocol):
    def publish(self, event: Any) -> None:
        """Queue ``event`` for the webhook endpoints of ``event._account``."""


@dataclasses.dataclass(frozen=True)
class RequestContext:
    account: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    api_version: str | None = None
    base_url: str = ""
    sink: EventSink | None = None


_current: ContextVar[RequestContext] = ContextVar("stripe_emulator_context")
_NO_REQUEST = RequestContext()


def current() -> RequestContext:
    return _current.get(_NO_REQUEST)


@contextlib.contextmanager
def use(context: RequestContext) -> Iterator[None]:
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def acting_as(account: str | None) -> Iterator[None]:
    """Attribute what happens inside to ``account``, outside any API request.

    Used by the hosted checkout page (a browser has no API key) and by lazy session
    expiry, whose events belong to the account that created the session. Like Stripe,
    such events carry no request id or idempotency key.
    """
    ctx = dataclasses.replace(current(), account=account, request_id=None, idempotency_key=None)
    with use(ctx):
        yield
