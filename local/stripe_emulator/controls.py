"""The ``/_config`` endpoints tests steer the emulator with: revoked and rolled keys,
injected faults, dropped webhook deliveries and per-account request counts.

None of this exists in Stripe. Faults answer the way Stripe answers when it is down,
busy or rate limiting (status, error ``code``, ``Stripe-Should-Retry``), because the
official SDK decides from exactly those whether to retry; dropped deliveries are the
webhooks a receiver never gets (an outage on its side that outlasts Stripe's retries),
which only reconciliation through ``GET /v1/events`` can make up for; request counts let
a benchmark report how many Stripe calls a piece of work costs.

Each endpoint names the account by one of its keys (``api_key``); any of the account's
keys, expired ones included, names the same account (see ``accounts``).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any

from aiohttp import web

from .accounts import ACCOUNTS
from .billing import set_grace_hours
from .common import Routes, as_int, read_params, require
from .errors import StripeApiError, json_response

VALID_KEY = re.compile(r"^(sk|rk)_test_[A-Za-z0-9]{16,}$")
_STATUSES = frozenset({429, 500, 502, 503, 504})
_CODE = re.compile(r"^[a-z][a-z_]*$")
_EVENT_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_INJECTED = "Injected failure (emulator fault)"
# Stripe's wording for the error codes a fault is most often given, with their status.
_KNOWN_CODES: dict[str, tuple[int, str]] = {
    "rate_limit": (
        429,
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
    ),
    "lock_timeout": (
        429,
        "This object cannot be accessed right now because another API request or Stripe "
        "process is currently accessing it. If you see this error intermittently, retry the "
        "request. If you see this error frequently and are making multiple concurrent "
        "requests to a single object, make your requests serially or at a lower rate.",
    ),
}
# Stripe asks its SDKs to retry a lock timeout (stripe-python retries a 429 only when
# told to); a plain rate limit gets no such header, so the SDK surfaces it.
_RETRIED_BY_DEFAULT = frozenset({"lock_timeout"})


@dataclasses.dataclass
class Fault:
    """Answer ``status`` to the account's next ``remaining`` requests under ``path_prefix``.

    ``after``: the request runs first (and, with an Idempotency-Key, is recorded) and only
    its answer is lost, as when a connection drops on the way back; a retry with the same
    key then gets the original answer replayed.
    """

    account: str
    path_prefix: str
    status: int
    remaining: int
    code: str | None = None
    should_retry: bool | None = None
    after: bool = False

    def response(self, request_id: str) -> web.Response:
        _, message = _KNOWN_CODES.get(self.code or "", (self.status, _INJECTED))
        error: dict[str, Any] = {
            "type": "invalid_request_error" if self.status < 500 else "api_error",
            "message": message,
        }
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + self.code.replace("_", "-")
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        response = json_response({"error": error}, status=self.status)
        if self.should_retry is not None:
            response.headers["Stripe-Should-Retry"] = "true" if self.should_retry else "false"
        return response


@dataclasses.dataclass
class DeliveryDrop:
    """Send none of the account's next ``remaining`` events (of ``event_type``, if given)
    to its webhook endpoints."""

    account: str
    event_type: str | None
    remaining: int


@dataclasses.dataclass
class _Tally:
    total: int = 0
    by_endpoint: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def export(self) -> dict[str, Any]:
        return {"total": self.total, "by_endpoint": dict(sorted(self.by_endpoint.items()))}


class Controls:
    """The emulator's test-only state: what ``/_config`` set and what was counted."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.drops: list[DeliveryDrop] = []
        self._tallies: dict[str, _Tally] = {}

    def count(self, account: str, request: web.Request) -> None:
        """One more API request by ``account``, counted under its route template
        (``POST /v1/payment_intents/{id}/confirm``) so ids do not split the counts."""
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else request.path
        tally = self._tallies.setdefault(account, _Tally())
        tally.total += 1
        tally.by_endpoint[f"{request.method} {path}"] += 1

    def counts(self, account: str | None = None) -> dict[str, Any]:
        if account is not None:
            return self._tallies.get(account, _Tally()).export()
        return {name: tally.export() for name, tally in sorted(self._tallies.items())}

    def reset_counts(self, account: str | None = None) -> None:
        if account is None:
            self._tallies.clear()
        else:
            self._tallies.pop(account, None)

    def take_fault(self, account: str | None, path: str) -> Fault | None:
        """The fault this request meets, if any, counted as used."""
        for fault in self.faults:
            if (
                fault.remaining > 0
                and fault.account == account
                and path.startswith(fault.path_prefix)
            ):
                fault.remaining -= 1
                return fault
        return None

    def take_drop(self, account: str | None, event_type: str) -> bool:
        """Whether this event, which the account's endpoints would receive, is dropped
        (counted as used)."""
        for drop in self.drops:
            if (
                drop.remaining > 0
                and drop.account == account
                and drop.event_type in (None, event_type)
            ):
                drop.remaining -= 1
                return True
        return False


CONTROLS = web.AppKey("controls", Controls)


def _key(value: Any) -> str:
    if not isinstance(value, str) or not VALID_KEY.match(value):
        raise StripeApiError(400, "api_key must be a test secret key", param="api_key")
    return value


def _account(request: web.Request, params: dict[str, Any]) -> str:
    """The account the ``api_key`` parameter opens."""
    return request.app[ACCOUNTS].account_of(_key(params.get("api_key")))


async def revoke_key(request: web.Request) -> web.Response:
    """``POST /_config/revoked_keys api_key=...``: the key is deleted in the dashboard,
    so Stripe answers it 401 ``api_key_expired`` from now on (tests of revoked
    credentials). The account and its other keys live on."""
    key = _key((await read_params(request)).get("api_key"))
    request.app[ACCOUNTS].expire(key)
    return json_response({"revoked": True})


async def roll_key(request: web.Request) -> web.Response:
    """``POST /_config/roll_key api_key=...``: ``{"api_key": <new key>}``, a new secret
    key for the same account (its objects, events, webhook endpoints and request counts
    stay); the old key answers 401 ``api_key_expired`` from now on. Rolling a revoked
    key is how a test mends it, as a Stripe user rolls a key in the dashboard."""
    key = _key((await read_params(request)).get("api_key"))
    return json_response({"api_key": request.app[ACCOUNTS].roll(key)})


def _flag(value: Any, param: str) -> bool | None:
    if value in (None, ""):
        return None
    if value in ("true", "false", True, False):
        return value in ("true", True)
    raise StripeApiError(400, f"{param} must be true or false", param=param)


async def inject_fault(request: web.Request) -> web.Response:
    """``POST /_config/faults``: the account's next ``count`` requests under ``path_prefix``
    fail as Stripe fails (outages, rate limits, lock timeouts), for tests of retries and of
    a crash between a Stripe call and the caller's own write.

    Parameters: ``api_key``, ``path_prefix`` (``/v1/...``), ``count``; ``status`` (429 or
    5xx; optional when ``code`` is ``rate_limit`` or ``lock_timeout``, which imply 429);
    ``code`` (Stripe's error code, e.g. ``rate_limit``, ``lock_timeout``); ``should_retry``
    (``true``/``false``: the ``Stripe-Should-Retry`` header, by default ``true`` for
    ``lock_timeout`` and absent otherwise); ``when`` (``before``, the default: the request
    never runs; ``after``: it runs and its answer is replaced). A new fault replaces the
    account's fault for the same prefix (``count=0`` ends an outage).
    """
    params = await read_params(request)
    account, prefix, count = (
        _account(request, params),
        params.get("path_prefix"),
        params.get("count"),
    )
    if not (isinstance(prefix, str) and prefix.startswith("/v1/")):
        raise StripeApiError(400, "path_prefix must start with /v1/", param="path_prefix")
    if not str(count).isdigit():
        raise StripeApiError(400, "count must be a whole number", param="count")
    code = params.get("code") or None
    if code is not None and not (isinstance(code, str) and _CODE.match(code)):
        raise StripeApiError(400, "code must be a Stripe error code", param="code")
    default_status = _KNOWN_CODES[code][0] if code in _KNOWN_CODES else None
    status = params.get("status") or default_status
    if not str(status).isdigit() or int(str(status)) not in _STATUSES:
        raise StripeApiError(400, "status must be 429 or 5xx", param="status")
    should_retry = _flag(params.get("should_retry"), "should_retry")
    if should_retry is None and code in _RETRIED_BY_DEFAULT:
        should_retry = True
    when = params.get("when", "before")
    if when not in ("before", "after"):
        raise StripeApiError(400, "when must be before or after", param="when")
    faults = request.app[CONTROLS].faults
    faults[:] = [f for f in faults if (f.account, f.path_prefix) != (account, prefix)]
    faults.append(
        Fault(
            account, prefix, int(str(status)), int(str(count)), code, should_retry, when == "after"
        )
    )
    return json_response({"injected": True})


async def drop_deliveries(request: web.Request) -> web.Response:
    """``POST /_config/drop_deliveries``: the account's next ``count`` events reach none
    of its webhook endpoints, for tests of reconciliation after lost webhooks.

    Parameters: ``api_key``, ``count``; ``event_type`` (optional: only events of that
    type are dropped and counted). The events still exist and are listed by
    ``GET /v1/events`` (with ``pending_webhooks`` left at the number of endpoints that
    never got them, so ``delivery_success=false`` finds them). Only events the account's
    endpoints are enabled for use up the count, each once however many endpoints it
    would have gone to. A new drop replaces the account's drop for the same
    ``event_type`` (``count=0`` ends it).
    """
    params = await read_params(request)
    account, count = _account(request, params), params.get("count")
    if not str(count).isdigit():
        raise StripeApiError(400, "count must be a whole number", param="count")
    event_type = params.get("event_type") or None
    if not (event_type is None or (isinstance(event_type, str) and _EVENT_TYPE.match(event_type))):
        raise StripeApiError(400, "event_type must be a Stripe event type", param="event_type")
    drops = request.app[CONTROLS].drops
    drops[:] = [d for d in drops if (d.account, d.event_type) != (account, event_type)]
    drops.append(DeliveryDrop(account, event_type, int(str(count))))
    return json_response({"dropping": True})


async def request_counts(request: web.Request) -> web.Response:
    """``GET /_config/requests?api_key=...``: the API requests that account made with
    any of its keys, in total and per route (``{"total": 3, "by_endpoint":
    {"POST /v1/payment_intents": 2, ...}}``), faulted and replayed ones included: each
    is a call the client paid for. Without ``api_key``: ``{"accounts": {"acct_...":
    {"api_keys": [...], ...}}}`` for every account."""
    params = await read_params(request)
    controls, accounts = request.app[CONTROLS], request.app[ACCOUNTS]
    if "api_key" not in params:
        everyone = {
            account: {"api_keys": accounts.keys_of(account), **counts}
            for account, counts in controls.counts().items()
        }
        return json_response({"accounts": everyone})
    account = _account(request, params)
    return json_response(
        {"api_key": params["api_key"], "account": account, **controls.counts(account)}
    )


async def reset_request_counts(request: web.Request) -> web.Response:
    """``DELETE /_config/requests?api_key=...``: start that account's counts (or, without
    ``api_key``, everyone's) from zero, e.g. between a benchmark's warm-up and its run."""
    params = await read_params(request)
    account = _account(request, params) if "api_key" in params else None
    request.app[CONTROLS].reset_counts(account)
    return json_response({"reset": True})


async def set_finalization_grace(request: web.Request) -> web.Response:
    """``POST /_config/invoice_finalization_grace api_key=... hours=...``: the account's
    "finalize invoices after N hours" setting (0 to 72; Stripe's default is one hour),
    which Billing's renewal drafts wait for."""
    params = await read_params(request)
    account = _account(request, params)
    hours = as_int(require(params, "hours"), "hours")
    if hours > 72:
        raise StripeApiError(400, "hours must be between 0 and 72", param="hours")
    set_grace_hours(account, hours)
    return json_response({"hours": hours})


ROUTES: Routes = [
    ("POST", "/_config/revoked_keys", revoke_key),
    ("POST", "/_config/roll_key", roll_key),
    ("POST", "/_config/faults", inject_fault),
    ("POST", "/_config/drop_deliveries", drop_deliveries),
    ("GET", "/_config/requests", request_counts),
    ("DELETE", "/_config/requests", reset_request_counts),
    ("POST", "/_config/invoice_finalization_grace", set_finalization_grace),
]
