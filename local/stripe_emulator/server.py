"""The emulator's aiohttp application and the thread that serves it.

The application is localstripe's route table (its handlers, not its app: that one
pickles the store to /tmp on every POST) behind the emulator's own middlewares and
in front of the emulator's own routes, which take precedence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import ipaddress
import json
import logging
import re
import socket
import threading

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import random_id

from . import (
    billing,
    catalog,
    checkout,
    checkout_page,
    controls,
    events,
    invoice_items,
    patches,
    payments,
    portal,
    promotions,
    refunds,
    subscriptions,
    tax,
    upstream,
    webhook_endpoints,
)
from .accounts import ACCOUNTS, Accounts
from .common import Handler, read_params
from .context import REQUEST_ID, RequestContext, use
from .controls import CONTROLS, VALID_KEY, Controls
from .delivery import WebhookHub
from .errors import (
    MissingObject,
    StripeApiError,
    blame_parameter,
    error_response,
    json_response,
)
from .idempotency import IdempotencyStore
from .normalise import normalise

logger = logging.getLogger(__name__)

_KEY_PREFIX = re.compile(r"^(sk|rk|pk)_(test|live)_")
# Paths a browser or localstripe's tooling reaches without an API key.
_KEYLESS_PATHS = ("/js.stripe.com/", "/_config/", "/checkout/", "/portal/")


@dataclasses.dataclass(frozen=True)
class _State:
    base_url: str
    hub: WebhookHub
    idempotency: IdempotencyStore
    accounts: Accounts
    controls: Controls


_STATE = web.AppKey("state", _State)


def _masked(key: str) -> str:
    """Stripe's way of echoing a bad key: prefix and last four characters only."""
    match = _KEY_PREFIX.match(key)
    prefix = match.group(0) if match else ""
    rest = key[len(prefix) :]
    shown = rest[-4:] if len(rest) > 8 else ""
    return prefix + "*" * (len(rest) - len(shown)) + shown


def _api_key(request: web.Request) -> str:
    """The request's valid test secret (or restricted) key, else Stripe's 401."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    key = credentials.strip() if scheme == "Bearer" else ""
    if scheme == "Basic":
        try:
            key = base64.b64decode(credentials).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if VALID_KEY.match(key):
        return key
    if not key:
        raise StripeApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
        )
    if key.startswith("pk_"):
        raise StripeApiError(
            401,
            "This API call cannot be made with a publishable API key. Please use a secret API key.",
            code="secret_key_required",
        )
    raise StripeApiError(401, f"Invalid API Key provided: {_masked(key)}")


@web.middleware
async def _outermost(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids, and Stripe-shaped JSON for whatever escapes the inner layers."""
    request_id = request[REQUEST_ID] = "req_" + random_id(14)
    try:
        response = await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # localstripe answers text here, which the SDK fails to decode.
        message = (
            f"Unrecognized request URL ({request.method}: {request.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/."
        )
        response = json_response(
            {"error": {"type": "invalid_request_error", "message": message}}, status=404
        )
    except UserError as exc:
        response = error_response(exc)
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("emulator error on %s %s", request.method, request.path)
        response = json_response(
            {"error": {"type": "api_error", "message": "The local Stripe emulator failed."}},
            status=500,
        )
    response.headers.setdefault("Request-Id", request_id)
    return response


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the key and make its account the one everything in this request belongs
    to; count the request and apply any fault injected for it (see ``controls``)."""
    state = request.app[_STATE]
    key = None if request.path.startswith(_KEYLESS_PATHS) else _api_key(request)
    account = None if key is None else state.accounts.account_of(key)
    if account is not None:
        state.controls.count(account, request)
    fault = state.controls.take_fault(account, request.path)
    if fault is not None and not fault.after:
        return fault.response(request[REQUEST_ID])
    if key is not None and state.accounts.is_expired(key):
        raise StripeApiError(
            401, f"Expired API Key provided: {_masked(key)}", code="api_key_expired"
        )
    context = RequestContext(
        account=account,
        request_id=request[REQUEST_ID],
        idempotency_key=request.headers.get("Idempotency-Key"),
        api_version=request.headers.get("Stripe-Version"),
        base_url=state.base_url,
        sink=state.hub,
    )
    with use(context):
        response = await handler(request)
    if fault is not None:
        # The work is done (and recorded for replay); only its answer is lost.
        return fault.response(request[REQUEST_ID])
    return response


@web.middleware
async def _idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await request.app[_STATE].idempotency.handle(request, handler)


@web.middleware
async def _stripe_shape(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as Stripe's JSON, and every JSON answer normalised (see ``normalise``)."""
    try:
        response = await handler(request)
    except MissingObject as exc:
        params = await read_params(request)
        response = error_response(blame_parameter(exc, params, request.match_info.values()))
    except UserError as exc:
        response = error_response(exc)
    if (
        isinstance(response, web.Response)
        and response.content_type == "application/json"
        and isinstance(response.body, bytes)
    ):
        expand = (await read_params(request)).get("expand")
        paths = expand if isinstance(expand, list) else []
        expanded = frozenset(path for path in paths if isinstance(path, str))
        body = normalise(json.loads(response.body), expanded)
        response.body = json.dumps(body, indent=2).encode()
    return response


def _build_app(state: _State) -> web.Application:
    app = web.Application(middlewares=[_outermost, _authenticate, _idempotency, _stripe_shape])
    app[_STATE] = state
    app[CONTROLS] = state.controls
    app[ACCOUNTS] = state.accounts
    own = [
        *events.ROUTES,
        *payments.ROUTES,
        *checkout.ROUTES,
        *webhook_endpoints.ROUTES,
        *refunds.ROUTES,
        *catalog.ROUTES,
        *subscriptions.ROUTES,
        *billing.ROUTES,
        *invoice_items.ROUTES,
        *tax.ROUTES,
        *promotions.ROUTES,
        *portal.ROUTES,
        *checkout_page.ROUTES,
        *controls.ROUTES,
    ]
    replaced = {(method, path) for method, path, _ in own}
    inherited = [route for route in upstream.routes() if route[:2] not in replaced]
    for method, path, handler in own + inherited:
        app.router.add_route(method, path, handler)
    return app


class StripeEmulator:
    """localstripe extended with what Billow needs, served from a background thread.

    Objects live in localstripe's process-wide store, so they survive ``stop`` and
    ``start`` (as do accounts and idempotency records); one emulator per process is the
    intent.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        address = ipaddress.ip_address(host)
        if address.version != 4 or not address.is_loopback:
            raise ValueError(f"the Stripe emulator only listens on IPv4 loopback, not {host}")
        self._host = host
        self._port = port
        self._idempotency = IdempotencyStore()
        self._accounts = Accounts()
        self._controls = Controls()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the Stripe emulator is not running")
        return self._url

    def start(self) -> str:
        """Serve in a daemon thread with its own event loop; return the base URL once ready."""
        if self._thread is not None:
            raise RuntimeError("the Stripe emulator is already running")
        patches.install()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        url = f"http://{self._host}:{sock.getsockname()[1]}"
        ready = threading.Event()
        failures: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(sock, url, ready, failures), name="stripe-emulator", daemon=True
        )
        thread.start()
        ready.wait()
        if failures:
            thread.join()
            sock.close()
            raise RuntimeError("the Stripe emulator failed to start") from failures[0]
        self._thread, self._url = thread, url
        return url

    def stop(self) -> None:
        """Stop serving, finish the thread; pending webhook deliveries are dropped."""
        if self._thread is None:
            return
        assert self._loop is not None and self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = self._loop = self._stopping = self._url = None

    def _run(
        self,
        sock: socket.socket,
        url: str,
        ready: threading.Event,
        failures: list[BaseException],
    ) -> None:
        try:
            asyncio.run(self._serve(sock, url, ready))
        except Exception as exc:
            failures.append(exc)
            ready.set()

    async def _serve(self, sock: socket.socket, url: str, ready: threading.Event) -> None:
        hub = WebhookHub(self._controls)
        await hub.open()
        runner = web.AppRunner(
            _build_app(_State(url, hub, self._idempotency, self._accounts, self._controls)),
            access_log=None,
        )
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            await hub.close()
