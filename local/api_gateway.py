"""API Gateway (HTTP API, payload v2.0): routes matched as API Gateway matches them, the
event a request becomes, the response a result becomes, and the threaded HTTP server that
plays the gateway (with the local-only ``/_local/`` admin endpoints beside it)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from billow.topology import Route
from local.lambda_invocation import Invoke, log_handler_failure

logger = logging.getLogger(__name__)

API_ID = "local"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway's request payload cap; bigger requests get a 413 without reaching a handler."""


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    """The request target as sent: percent-encoded path plus ``?query``."""
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str
    port: int


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def json_response(status: int, payload: Any) -> HttpResponse:
    return HttpResponse(
        status, [("content-type", "application/json")], json.dumps(payload).encode()
    )


def gateway_error(
    status: int, error: str, code: str, details: dict[str, Any] | None = None
) -> HttpResponse:
    payload: dict[str, Any] = {"status": status, "error": error, "code": code}
    if details is not None:
        payload["error_details"] = details
    return json_response(status, payload)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


@dataclass(frozen=True)
class GatewayPath:
    routed: str
    """What routes are matched against: decoded once, cut at a ``?`` decoding produced."""
    raw: str
    """What the integration gets (``rawPath``): decoded a second time."""


_UNFINISHED_ESCAPE = re.compile(r"%[0-9A-Fa-f](?![0-9A-Fa-f])")


def gateway_path(target: str) -> GatewayPath | None:
    """How an HTTP API reads a request's path, or None where it answers 400 itself.

    AWS documents none of it; this follows live captures of payload 2.0 events (an HTTP
    API with a ``$default`` route in front of an echoing Lambda, published with the
    hotsock/voker project's ingress probe):

    - the path is percent-decoded once and routed on; a ``?`` this decoding produced ends
      the path (``/x/a%3Fb`` reaches the Lambda as ``/x/a``);
    - it is decoded a second time for the Lambda: ``rawPath``, ``requestContext.http.path``
      and the path parameters (``a%252Fb`` arrives as ``a/b``, ``a%2525b`` as ``a%b``);
    - a ``%`` the second decoding cannot finish (one hex digit, then something else: the
      ``%do`` that ``%25do`` decodes to) is a 400 before any Lambda runs; a ``%`` followed
      by anything but a hex digit stays as it is.

    So ``quote(id, safe="")`` delivers ``id`` unchanged unless it holds ``/``, ``?`` or
    ``%``, which is why Billow refuses those in the ids it accepts."""
    once = unquote(urlsplit(target).path).partition("?")[0]
    if _UNFINISHED_ESCAPE.search(once):
        return None
    return GatewayPath(routed=once, raw=unquote(once))


class RouteTable:
    """Picks routes the way HTTP APIs do: the most specific path wins (literal segments
    before ``{variables}``, variables before a greedy ``{proxy+}``), a route's own method
    before ``ANY``, and ``$default`` catches whatever is left."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._default = next((route for route in routes if route.path == "$default"), None)
        self._routes = sorted((r for r in routes if r.path != "$default"), key=_specificity)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for ``path`` as routed (:attr:`GatewayPath.routed`); its parameters
        are decoded once more, as the integration gets them."""
        segments = path.split("/")[1:]
        for route in self._routes:
            if route.method not in (method, "ANY"):
                continue
            parameters = _match_segments(route.path.split("/")[1:], segments)
            if parameters is not None:
                return RouteMatch(route, parameters)
        return RouteMatch(self._default, {}) if self._default else None


def _specificity(route: Route) -> tuple[bool, int, tuple[int, ...], bool]:
    segments = route.path.split("/")[1:]
    greedy = segments[-1].endswith("+}")
    shape = tuple(1 if segment.startswith("{") else 0 for segment in segments)
    return greedy, -len(segments) if greedy else 0, shape, route.method == "ANY"


def _match_segments(pattern: list[str], actual: list[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, part in enumerate(pattern):
        if part.startswith("{") and part.endswith("+}"):
            rest = actual[index:]
            if not any(rest):
                return None
            parameters[part[1:-2]] = unquote("/".join(rest))
            return parameters
        if index >= len(actual):
            return None
        if part.startswith("{") and part.endswith("}"):
            if not actual[index]:
                return None
            parameters[part[1:-1]] = unquote(actual[index])
        elif unquote(actual[index]) != part:
            return None
    return parameters if len(actual) == len(pattern) else None


_TEXT_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
    }
)


def _encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """Text bodies travel as text, anything else base64-encoded (``isBase64Encoded``)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media.startswith("text/") or media in _TEXT_MEDIA_TYPES or media.endswith(("+json", "+xml")):
        with contextlib.suppress(UnicodeDecodeError):
            return body.decode("utf-8"), False
    return base64.b64encode(body).decode("ascii"), True


def http_api_event(
    request: HttpRequest,
    match: RouteMatch,
    path: GatewayPath,
    *,
    account_id: str,
    request_id: str,
    now: datetime,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload v2.0 event for one request."""
    split = urlsplit(request.target)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    )
    headers["x-forwarded-port"] = str(request.port)
    headers["x-forwarded-proto"] = "http"
    headers["x-amzn-trace-id"] = f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}"
    host = headers.get("host", f"127.0.0.1:{request.port}")
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route.key,
        "rawPath": path.raw,
        "rawQueryString": split.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    if match.path_parameters:
        event["pathParameters"] = match.path_parameters
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": request.method,
            "path": path.raw,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": match.route.key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if request.body:
        event["body"], event["isBase64Encoded"] = _encode_body(
            request.body, headers.get("content-type")
        )
    else:
        event["isBase64Encoded"] = False
    return event


_HOP_BY_HOP = frozenset({"content-length", "connection", "transfer-encoding"})


def http_api_response(result: Any, request_id: str) -> HttpResponse:
    """Turn a handler's result into the HTTP response, as API Gateway does for payload v2.0.

    A result without ``statusCode`` is sent as a 200 JSON body (response inference).
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        headers = [("content-type", "application/json")]
        response = HttpResponse(200, headers, json.dumps(result).encode())
    else:
        body = result.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError(f"malformed Lambda response: body is a {type(body).__name__}")
        raw = b""
        if body is not None:
            raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        headers = [
            (str(name), str(value))
            for name, value in (result.get("headers") or {}).items()
            if str(name).lower() not in _HOP_BY_HOP
        ]
        headers += [("set-cookie", str(cookie)) for cookie in result.get("cookies") or []]
        response = HttpResponse(int(result["statusCode"]), headers, raw)
    response.headers.append(("apigw-requestid", request_id))
    return response


class Gateway:
    """Routes requests to handlers (or to the admin endpoints) and shapes the answers."""

    def __init__(
        self,
        routes: RouteTable,
        invoke: Invoke,
        admin: Callable[[HttpRequest], HttpResponse],
        after_invocation: Callable[[], None],
    ) -> None:
        self._routes = routes
        self._invoke = invoke
        self._admin = admin
        self._after_invocation = after_invocation
        self.account_id = ""

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = urlsplit(request.target).path
        try:
            if path != "/_local" and not path.startswith("/_local/"):
                return self._call_route(request)
            try:
                return self._admin(request)
            except Exception:
                log_handler_failure("the admin endpoint", f"{request.method} {path}")
                return json_response(500, {"message": "Internal Server Error"})
        finally:
            self._after_invocation()

    def _call_route(self, request: HttpRequest) -> HttpResponse:
        path = gateway_path(request.target)
        if path is None:
            return json_response(400, {"message": "Bad Request"})
        match = self._routes.match(request.method, path.routed)
        if match is None:
            return json_response(404, {"message": "Not Found"})
        request_id = base64.b64encode(os.urandom(10)).decode("ascii")
        event = http_api_event(
            request,
            match,
            path,
            account_id=self.account_id,
            request_id=request_id,
            now=datetime.now(UTC),
        )
        try:
            return http_api_response(self._invoke(match.route.function, event), request_id)
        except Exception:
            log_handler_failure(match.route.function, f"{request.method} {path.raw}")
            return json_response(500, {"message": "Internal Server Error"})


class _PayloadTooLargeError(Exception):
    pass


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gateway: Gateway, port: int) -> None:
        super().__init__(("127.0.0.1", port), _GatewayRequestHandler)
        self.gateway = gateway


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    server: GatewayServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.close_connection = True
        try:
            body = self._read_body()
        except _PayloadTooLargeError:
            self._send(json_response(413, {"message": "Request Entity Too Large"}))
            return
        except ValueError:
            self._send(json_response(400, {"message": "Bad Request"}))
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
            port=self.server.server_address[1],
        )
        self._send(self.server.gateway.handle(request))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("gateway: " + format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            raise _PayloadTooLargeError
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
            total += size
            if total > MAX_PAYLOAD_BYTES:
                raise _PayloadTooLargeError
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
