"""Local mode: all of Billow on 127.0.0.1, built from the topology the stack deploys.

AWS is moto in server mode. The parts AWS plays itself are played here by threads in this
process that build the real event shapes and call the very same handlers:

* API Gateway (HTTP API, payload v2.0): a threaded HTTP server, plus local-only admin
  endpoints under ``/_local/`` that the deployed stack never has;
* Lambda's SQS event source mappings: one long-polling thread per queue, honouring
  partial batch failures (failed messages come back after the visibility timeout and
  moto moves them to the DLQ after ``max_receive_count`` receives);
* Lambda's DynamoDB-stream event source mappings: one tailer per stream consumer, with
  Lambda's event filtering and retry-from-the-first-failure;
* the people subscribed to notification topics: each declared topic is a moto SNS topic
  with an SQS "inbox" queue subscribed to it, and what reached the topic is shown by
  ``LocalRuntime.topic_messages`` and ``GET /_local/topics/{name}/messages``.

Functions find the queues they send to and the topics they publish to through the same
``BILLOW_QUEUE_URL_<NAME>`` / ``BILLOW_TOPIC_ARN_<NAME>`` variables the stack sets. All
functions share this process's environment, so each one sees every queue and topic that
any function declares in ``sends_to`` / ``publishes_to`` (in AWS, only its own).

EventBridge Scheduler is the part that is *not* played automatically: moto's Scheduler
never fires, so a schedule runs only when asked to, through ``LocalRuntime.fire_schedule``,
``POST /_local/schedules/{name}/fire`` or ``admin.py fire-schedule``, at the time the
caller chooses (scheduled work takes "now" from its event, so any date can be replayed).

Handlers, settings and boto3 clients are process-wide, so run one ``LocalRuntime`` at a
time per process: a second one borrows the environment until it stops.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
from moto.events.models import EventPattern
from moto.server import ThreadedMotoServer

from billow.api.json_nesting import nests_deeper_than
from billow.composition import dependencies
from billow.domain.errors import ValidationFailed
from billow.services.organizations import NewOrganization, create_organization
from billow.settings import QUEUE_URL_PREFIX, TOPIC_ARN_PREFIX, env_name
from billow.topology import TOPOLOGY, Function, Queue, Route, StreamConsumer, Topic, Topology
from local import moto_patches, moto_speedups
from local.stripe_emulator import StripeEmulator

REPO_ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
SECRETS_PREFIX = "billow/local"
API_ID = "local"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway's request payload cap; bigger requests get a 413 without reaching a handler."""
SQS_WAIT_S = 1
"""Long-poll wait: short, so a stopping poller notices within a couple of seconds."""
STREAM_IDLE_WAIT_S = 0.5
"""How long a caught-up stream tailer sleeps unless an invocation wakes it earlier."""
DLQ_RETENTION_S = 14 * 24 * 3600
SEEN_EVENT_IDS = 10_000
"""Stream records remembered per tailer to drop moto's re-reads (far more than one read)."""
JOIN_TIMEOUT_S = 10.0
_ENVELOPE_FIELDS = (
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
)
EVENT_ENVELOPE = {
    "InputPathsMap": {field: f"$.{field}" for field in _ENVELOPE_FIELDS},
    "InputTemplate": (
        '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
        '"account": "<account>", "time": <time>, "region": "<region>", '
        '"resources": <resources>, "detail": <detail>}'
    ),
}
"""What EventBridge puts on an SQS target untransformed. moto's own default drops
``account``, which consumers parsing the envelope (Powertools' EventBridgeModel) require;
moto turns the numeric ``<time>`` into the ISO timestamp itself."""

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
Invoke = Callable[[str, dict[str, Any]], Any]


class PortInUseError(RuntimeError):
    """A fixed port asked for is taken; ``python -m local`` turns this into a clear exit."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(f"{service}: port {port} on 127.0.0.1 is already in use")
        self.service = service
        self.port = port


class UnknownScheduleError(LookupError):
    pass


class ScheduleTimeOutOfRangeError(ValueError):
    """A schedule fired at a time outside :data:`SCHEDULE_TIMES`."""


class UnknownTopicError(LookupError):
    pass


# -- Lambda ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LambdaContext:
    """The context object the Python Lambda runtime passes to every handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_monotonic: float
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


def lambda_context(function: Function, account_id: str) -> LambdaContext:
    return LambdaContext(
        function_name=function.name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{account_id}:function:{function.name}",
        memory_limit_in_mb=function.memory_mb,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function.name}",
        log_stream_name=f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        deadline_monotonic=time.monotonic() + function.timeout_s,
    )


class _Functions:
    """Loads each function's handler once, like a warm container, and invokes it.

    Several functions share a module name (``handler``) in their own folders, which Lambda
    keeps apart with one process per function; here each entry module gets a unique name.

    A Lambda execution environment serves one invocation at a time, and Powertools keeps
    per-request state on module-level objects (the API resolver's current event and
    context, a batch processor's records). In one process those objects are shared, so
    each function runs one invocation at a time here: two concurrent API requests would
    otherwise see each other's organization.
    """

    def __init__(self, topology: Topology, root: Path, account_id: str) -> None:
        self._topology = topology
        self._root = root
        self._account_id = account_id
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._running: dict[str, threading.Lock] = {
            function.name: threading.Lock() for function in topology.functions
        }
        self._modules: list[str] = []
        self._paths: list[str] = []

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        function = self._topology.function(name)
        handler = self._handler(function)
        with self._running[name]:
            result = handler(event, lambda_context(function, self._account_id))
        try:
            # Lambda hands callers the JSON of the result, never the Python object.
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            raise RuntimeError(f"Runtime.MarshalError: {name} returned non-JSON: {exc}") from exc

    def unload(self) -> None:
        """Forget the loaded handlers so the next runtime gets cold starts."""
        for module in self._modules:
            sys.modules.pop(module, None)
        for path in self._paths:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)
        self._handlers.clear()

    def _handler(self, function: Function) -> Handler:
        with self._lock:
            if function.name not in self._handlers:
                self._handlers[function.name] = self._load(function)
            return self._handlers[function.name]

    def _load(self, function: Function) -> Handler:
        folder = (self._root / function.code).resolve()
        module_path, _, attribute = function.handler.rpartition(".")
        source = folder.joinpath(*module_path.split(".")).with_suffix(".py")
        if not source.is_file():
            raise ImportError(f"Runtime.ImportModuleError: {function.name}: no {source}")
        _refuse_shadowed_siblings(folder)
        unique = "_billow_fn__" + re.sub(r"\W", "_", f"{function.code}__{module_path}")
        spec = importlib.util.spec_from_file_location(unique, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"Runtime.ImportModuleError: {function.name}: cannot load {source}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        sys.path.insert(0, str(folder))  # siblings first while importing, as in /var/task
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
        finally:
            sys.path.remove(str(folder))
        self._modules.append(unique)
        if str(folder) not in sys.path:  # late imports inside handlers still find siblings
            sys.path.append(str(folder))
            self._paths.append(str(folder))
        handler: Handler = getattr(module, attribute)
        return handler


def _refuse_shadowed_siblings(folder: Path) -> None:
    """Fail loudly where one shared process would silently differ from one process each.

    If another code folder (or a library) already loaded a top-level module this folder
    also defines, this function would get that one instead of its own sibling.
    """
    for entry in folder.iterdir():
        if entry.suffix == ".py":
            name = entry.stem
        elif (entry / "__init__.py").is_file():
            name = entry.name
        else:
            continue
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin and not Path(origin).resolve().is_relative_to(folder):
            raise ImportError(
                f"{entry} would be shadowed by the already loaded module {name!r} from "
                f"{origin}; in local mode all functions share one process, rename one of them"
            )


def _log_handler_failure(function: str, trigger: str) -> None:
    logger.exception(
        "\n%s\n!! %s raised while handling %s (see the traceback below)\n%s",
        "!" * 88,
        function,
        trigger,
        "!" * 88,
    )


def _wire_json(value: Any) -> Any:
    """Turn botocore's parsed values back into the JSON Lambda events carry."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {key: _wire_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_wire_json(item) for item in value]
    return value


def batch_item_failures(result: Any, identifiers: Sequence[str]) -> set[str]:
    """Read a partial batch response the way Lambda does.

    No (or an empty) ``batchItemFailures`` list means everything succeeded; an entry that
    names nothing in the batch makes Lambda treat the whole batch as failed.
    """
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(identifiers)
    failed: set[str] = set()
    for entry in failures:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or identifier not in identifiers:
            return set(identifiers)
        failed.add(identifier)
    return failed


# -- API Gateway ----------------------------------------------------------------------------


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


def _error(
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


class _Gateway:
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
                _log_handler_failure("the admin endpoint", f"{request.method} {path}")
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
            _log_handler_failure(match.route.function, f"{request.method} {path.raw}")
            return json_response(500, {"message": "Internal Server Error"})


class _PayloadTooLargeError(Exception):
    pass


class _GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gateway: _Gateway, port: int) -> None:
        super().__init__(("127.0.0.1", port), _GatewayRequestHandler)
        self.gateway = gateway


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    server: _GatewayServer
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


# -- SQS and DynamoDB-stream pollers --------------------------------------------------------


class _Activity:
    """Bumped whenever a poller takes work and when it finishes it, so ``wait_idle`` can tell
    a quiet moment from one where work merely changed hands between two checks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def touch(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


@dataclass(frozen=True)
class _QueueResources:
    queue: Queue
    url: str
    arn: str
    dlq_url: str


@dataclass(frozen=True)
class _TopicResources:
    topic: Topic
    arn: str
    inbox_url: str
    """The SQS queue subscribed to the topic: it stands in for the people subscribed."""


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _wire_json(value["BinaryValue"])
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = _wire_json(list(value.get("BinaryListValues", [])))
    attribute["dataType"] = value["DataType"]
    return attribute


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ``Records[]`` entry of the event Lambda's SQS poller sends."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(eventSource="aws:sqs", eventSourceARN=queue_arn, awsRegion=REGION)
    return record


def _chunks(items: Sequence[Any], size: int = 10) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _QueuePoller:
    """Plays Lambda's SQS event source mapping for one queue.

    Messages not named in ``batchItemFailures`` are deleted; failed ones are left alone, so
    SQS shows them again after the visibility timeout and moto moves them to the DLQ once
    they have been received ``max_receive_count`` times. A raised exception fails the batch.
    """

    def __init__(
        self,
        resources: _QueueResources,
        sqs: Any,
        invoke: Invoke,
        activity: _Activity,
        stopping: threading.Event,
        after_invocation: Callable[[], None],
    ) -> None:
        self._resources = resources
        self._sqs = sqs
        self._invoke = invoke
        self._activity = activity
        self._stopping = stopping
        self._after_invocation = after_invocation
        self.thread = threading.Thread(
            target=self._run, name=f"billow-local-sqs-{resources.queue.name}", daemon=True
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._receive()
                if messages:
                    self._process(messages)
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("polling queue %s failed; retrying", self._resources.queue.name)
                self._stopping.wait(1.0)

    def _receive(self) -> list[dict[str, Any]]:
        wanted = self._resources.queue.batch_size
        messages: list[dict[str, Any]] = []
        wait = SQS_WAIT_S
        while len(messages) < wanted and not self._stopping.is_set():
            asked = min(10, wanted - len(messages))
            received = self._sqs.receive_message(
                QueueUrl=self._resources.url,
                MaxNumberOfMessages=asked,
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(received)
            if len(received) < asked:
                break
            wait = 0
        return messages

    def _process(self, messages: list[dict[str, Any]]) -> None:
        queue = self._resources.queue
        self._activity.touch()
        identifiers = [message["MessageId"] for message in messages]
        event = {"Records": [sqs_record(message, self._resources.arn) for message in messages]}
        try:
            failed = batch_item_failures(self._invoke(queue.consumer, event), identifiers)
        except Exception:
            _log_handler_failure(queue.consumer, f"a batch of {len(messages)} from {queue.name}")
            failed = set(identifiers)
        finally:
            self._after_invocation()
        done = [message for message in messages if message["MessageId"] not in failed]
        for chunk in _chunks(done):
            self._sqs.delete_message_batch(
                QueueUrl=self._resources.url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )
        if failed:
            logger.warning(
                "%s: %d of %d messages failed; SQS shows them again after the visibility "
                "timeout (DLQ after %d receives)",
                queue.name,
                len(failed),
                len(messages),
                queue.max_receive_count,
            )
        self._activity.touch()


class _StreamTailer:
    """Plays Lambda's DynamoDB-stream event source mapping for one consumer.

    Reads the table's stream through moto's DynamoDB Streams API, drops records the
    consumer's filter pattern rejects (Lambda event filtering shares EventBridge's pattern
    syntax, so moto's matcher is reused), and on ``batchItemFailures`` retries from the
    first failed record, at most ``max_retry_attempts`` times before skipping the batch.
    """

    def __init__(
        self,
        consumer: StreamConsumer,
        stream_arn: str,
        streams: Any,
        invoke: Invoke,
        activity: _Activity,
        stopping: threading.Event,
    ) -> None:
        self._consumer = consumer
        self._stream_arn = stream_arn
        self._streams = streams
        self._invoke = invoke
        self._activity = activity
        self._stopping = stopping
        self._pattern = EventPattern.load(json.dumps(consumer.filter_pattern))
        self._iterator: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._caught_up = threading.Condition()
        self._caught_up_at = float("-inf")
        self.wake = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"billow-local-stream-{consumer.function}", daemon=True
        )

    @property
    def function(self) -> str:
        return self._consumer.function

    def wait_caught_up(self, since: float, timeout: float) -> bool:
        """Wait for a read that started at or after ``since`` and found nothing new."""
        self.wake.set()
        with self._caught_up:
            return self._caught_up.wait_for(lambda: self._caught_up_at >= since, timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._read_once()
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("tailing the stream for %s failed; retrying", self.function)
                self._iterator = None
                self._stopping.wait(1.0)

    def _read_once(self) -> None:
        if self._iterator is None:
            self._iterator = self._first_iterator()
        self.wake.clear()
        started = time.monotonic()
        response = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
        self._iterator = response["NextShardIterator"]
        fresh = [record for record in response["Records"] if self._first_sighting(record)]
        if not fresh:
            with self._caught_up:
                self._caught_up_at = started
                self._caught_up.notify_all()
            self.wake.wait(STREAM_IDLE_WAIT_S)
            return
        self._activity.touch()
        records = [self._lambda_record(record) for record in fresh]
        # A Lambda record, not an EventBridge event: the pattern syntax is what they share.
        self._deliver([r for r in records if self._pattern.matches_event(cast(Any, r))])
        self._activity.touch()

    def _first_sighting(self, record: dict[str, Any]) -> bool:
        """False for a record read before.

        Two writes racing in moto can get the same sequence number, and moto starts the
        next read after the highest number it returned, so such a record is handed out
        again (at the tail: on every read, until the next write). Event IDs stay unique.
        """
        event_id: str = record["eventID"]
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)
        return True

    def _first_iterator(self) -> str:
        stream = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        (shard,) = stream["Shards"]  # moto keeps one shard per stream
        iterator: str = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        return iterator

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = _wire_json(record)
        converted["eventSourceARN"] = self._stream_arn
        return converted

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        consumer = self._consumer
        attempts = 0
        while records and not self._stopping.is_set():
            batch = records[: consumer.batch_size]
            failed_at = self._invoke_batch(batch)
            if failed_at is None:
                records, attempts = records[len(batch) :], 0
                continue
            attempts += 1
            if attempts > consumer.max_retry_attempts:
                logger.error(
                    "%s: giving up on %d stream records after %d retries",
                    consumer.function,
                    len(batch) - failed_at,
                    consumer.max_retry_attempts,
                )
                records, attempts = records[len(batch) :], 0
                continue
            records = records[failed_at:]
            self._stopping.wait(min(0.05 * 2**attempts, 1.0))

    def _invoke_batch(self, batch: list[dict[str, Any]]) -> int | None:
        """Invoke the consumer; the index of the first record to retry from, if any."""
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        try:
            result = self._invoke(self._consumer.function, {"Records": batch})
        except Exception:
            _log_handler_failure(self._consumer.function, f"{len(batch)} stream records")
            return 0
        failed = batch_item_failures(result, sequence_numbers)
        if not failed:
            return None
        return min(index for index, number in enumerate(sequence_numbers) if number in failed)


# -- the runtime ----------------------------------------------------------------------------


def schedule_time(moment: datetime) -> str:
    """Scheduler's ``<aws.scheduler.scheduled-time>`` form; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ensure_port_free(service: str, port: int) -> None:
    """Fail before starting a server thread: moto's thread would hang on a taken port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(service, port) from exc


def _forget_process_caches() -> None:
    """Each start and stop is a cold start: drop clients and settings built for another
    environment (boto3's default session, Billow's cached composition root)."""
    boto3.DEFAULT_SESSION = None
    dependencies.cache_clear()


_RUNNING: list[LocalRuntime] = []
"""Started runtimes, oldest first; they share one process environment."""

_FIRE_PATH = re.compile(r"/_local/schedules/(?P<name>[^/]+)/fire")
_TOPIC_MESSAGES_PATH = re.compile(r"/_local/topics/(?P<name>[^/]+)/messages")
SCHEDULE_TIMES = (datetime(1970, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))
"""Times a schedule may be fired at: from the Unix epoch to the end of year 2999. Billing
counts whole periods forward and back from the time, which Python's dates cannot do near
their ends (years 1 and 9999)."""


def check_declaration(topology: Topology) -> None:
    """Refuse a topology whose functions send to queues or topics it does not declare."""
    queues = {queue.name for queue in topology.queues}
    topics = {topic.name for topic in topology.topics}
    for function in topology.functions:
        for name in set(function.sends_to) - queues:
            raise ValueError(f"function {function.name} sends to the undeclared queue {name!r}")
        for name in set(function.publishes_to) - topics:
            raise ValueError(f"function {function.name} publishes to the undeclared topic {name!r}")


class LocalRuntime:
    """Billow on localhost: moto, the Stripe emulator, the gateway and the pollers."""

    def __init__(
        self,
        api_port: int = 0,
        stripe_port: int = 0,
        aws_port: int = 0,
        topology: Topology = TOPOLOGY,
        functions_root: Path = REPO_ROOT / "functions",
        visibility_timeout_s: int | None = None,
        webhook_retry_base_s: int = 30,
    ) -> None:
        self._api_port = api_port
        self._stripe_port = stripe_port
        self._aws_port = aws_port
        self._topology = topology
        self._functions_root = functions_root
        self._visibility_timeout_s = visibility_timeout_s
        self._webhook_retry_base_s = webhook_retry_base_s
        self._reset()

    def _reset(self) -> None:
        """Everything one run owns; a stopped runtime can be started again."""
        self._stopping = threading.Event()
        self._activity = _Activity()
        self._moto: ThreadedMotoServer | None = None
        self._stripe: StripeEmulator | None = None
        self._server: _GatewayServer | None = None
        self._threads: list[threading.Thread] = []
        self._tailers: list[_StreamTailer] = []
        self._queues: dict[str, _QueueResources] = {}
        self._topics: dict[str, _TopicResources] = {}
        self._topic_lock = threading.Lock()
        self._topic_messages: dict[str, list[dict[str, Any]]] = {}
        self._stream_arn = ""
        self._cleanups: list[Callable[[], object]] = []
        self._saved_env: dict[str, str | None] = {}
        self._werkzeug_level: int | None = None
        self._functions: _Functions | None = None
        self._clients: dict[str, Any] = {}
        self._urls: dict[str, str] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start moto, the Stripe emulator and the gateway, create the topology's resources
        and start the pollers. On failure, whatever had started is stopped again."""
        if self._urls:
            raise RuntimeError("this LocalRuntime is already started")
        for other in list(_RUNNING):
            # It is about to lose the environment its handlers read: let its work finish.
            try:
                other.wait_idle()
            except TimeoutError as exc:
                logger.warning("starting a second LocalRuntime while another is busy: %s", exc)
        check_declaration(self._topology)
        try:
            self._start_moto()
            self._start_stripe()
            self._bind_gateway()
            self._set_environment()
            account_id = self._clients["sts"].get_caller_identity()["Account"]
            self._functions = _Functions(self._topology, self._functions_root, account_id)
            self._create_resources()
            self._set_resource_environment()
            self._start_workers(account_id)
        except BaseException:
            self.stop()
            raise
        _RUNNING.append(self)
        logger.info(
            "local Billow: API %s, Stripe %s, AWS %s", self.api_url, self.stripe_url, self.aws_url
        )

    def stop(self) -> None:
        """Stop everything ``start`` began, in reverse; safe after a failed start or twice."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        self._stopping.set()
        for tailer in self._tailers:
            tailer.wake.set()
        if self._server is not None:
            if self._threads:
                self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("%s did not stop within %ss", thread.name, JOIN_TIMEOUT_S)
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as exc:  # state may already be gone (a reset moto)
                logger.debug("cleanup failed: %s", exc)
        if self._stripe is not None:
            self._stripe.stop()
        if self._moto is not None:
            self._moto.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._functions is not None:
            self._functions.unload()
        if self._werkzeug_level is not None:
            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
        _forget_process_caches()
        self._reset()

    def __enter__(self) -> LocalRuntime:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self._url("api")

    @property
    def stripe_url(self) -> str:
        return self._url("stripe")

    @property
    def aws_url(self) -> str:
        return self._url("aws")

    # -- what tests, the CLI and the admin endpoints use ----------------------------------

    def create_organization(self, name: str, api_key: str | None = None) -> NewOrganization:
        """Create a tenant with Billow's own service, in this runtime's table."""
        self._require_started()
        try:
            return create_organization(dependencies(), name=name, api_key=api_key)
        finally:
            self._wake_tailers()

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Invoke a function with ``event`` and return its JSON result, as ``aws lambda
        invoke`` does (an event source's batch, made by hand, for instance)."""
        try:
            return self._invoke(function, event)
        finally:
            self._wake_tailers()

    def fire_schedule(self, name: str, time: datetime) -> Any:
        """Invoke a schedule's target with the event EventBridge Scheduler would send."""
        schedule = next((s for s in self._topology.schedules if s.name == name), None)
        if schedule is None:
            raise UnknownScheduleError(name)
        first, end = SCHEDULE_TIMES
        if not first <= (time if time.tzinfo else time.replace(tzinfo=UTC)) < end:
            raise ScheduleTimeOutOfRangeError(time)
        try:
            return self._invoke(schedule.function, {"schedule": name, "time": schedule_time(time)})
        finally:
            self._wake_tailers()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once no queue holds a message (visible, in flight or delayed), every stream
        consumer has read to the end, and no poller took or finished work meanwhile.

        Messages that keep failing count as work until they reach their DLQ. Two quiet
        rounds in a row are required, with the DLQs unchanged between them: moto moves a
        message to its DLQ during a later receive, and for a moment it is in neither queue.
        """
        self._require_started()
        deadline = time.monotonic() + timeout
        quiet: tuple[int, tuple[int, ...]] | None = None  # activity mark and DLQ sizes
        while True:
            mark = self._activity.count
            checked_at = time.monotonic()
            counts = {name: self._queue_counts(res) for name, res in self._queues.items()}
            if (
                not any(n for c in counts.values() for name, n in c.items() if name != "DLQ")
                and all(
                    tailer.wait_caught_up(checked_at, max(0.0, deadline - time.monotonic()))
                    for tailer in self._tailers
                )
                and self._activity.count == mark
            ):
                round_ = (mark, tuple(c["DLQ"] for c in counts.values()))
                if quiet == round_:
                    return
                quiet = round_
            else:
                quiet = None
            if time.monotonic() >= deadline:
                raise TimeoutError(f"local Billow still busy after {timeout}s: {counts}")
            self._stopping.wait(0.05)

    def dlq_messages(self, queue_name: str) -> list[str]:
        """Peek at the bodies of the messages in a queue's DLQ; they stay there."""
        resources = self._queue(queue_name)
        messages = self._drain(resources.dlq_url)
        for chunk in _chunks(messages):
            self._clients["sqs"].change_message_visibility_batch(
                QueueUrl=resources.dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
        return [message["Body"] for message in messages]

    def topic_messages(self, topic_name: str) -> list[dict[str, Any]]:
        """Everything published to a topic since this runtime started, oldest first.

        Each entry is the notification SNS delivers to a subscribed queue (``Type``,
        ``MessageId``, ``TopicArn``, ``Subject``, ``Message``, ``Timestamp`` …). Reading
        moves what the inbox holds into a list kept here, so later readers see it too; SNS
        delivers to the inbox within ``Publish``, so once the publisher's invocation is
        over (``wait_idle``), its messages are in the answer.
        """
        self._require_started()
        if topic_name not in self._topics:
            raise UnknownTopicError(topic_name)
        inbox_url = self._topics[topic_name].inbox_url
        with self._topic_lock:
            messages = self._drain(inbox_url)
            received = self._topic_messages[topic_name]
            received.extend(json.loads(message["Body"]) for message in messages)
            for chunk in _chunks(messages):
                self._clients["sqs"].delete_message_batch(
                    QueueUrl=inbox_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                        for index, message in enumerate(chunk)
                    ],
                )
            return [dict(message) for message in received]

    def redrive_dlq(self, queue_name: str) -> int:
        """Move every DLQ message back to its source queue (replay); returns how many.

        moto has no StartMessageMoveTask, so this receives, re-sends and deletes.
        """
        resources = self._queue(queue_name)
        sqs = self._clients["sqs"]
        messages = self._drain(resources.dlq_url)
        for chunk in _chunks(messages):
            sent = sqs.send_message_batch(
                QueueUrl=resources.url,
                Entries=[
                    {
                        "Id": str(index),
                        "MessageBody": message["Body"],
                        "MessageAttributes": {
                            name: {key: v for key, v in value.items() if v not in ([], None)}
                            for name, value in message.get("MessageAttributes", {}).items()
                        },
                    }
                    for index, message in enumerate(chunk)
                ],
            )
            if sent.get("Failed"):
                raise RuntimeError(f"redrive to {queue_name} failed: {sent['Failed']}")
            sqs.delete_message_batch(
                QueueUrl=resources.dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )
        return len(messages)

    # -- start-up -------------------------------------------------------------------------

    def _start_moto(self) -> None:
        if self._aws_port:
            _ensure_port_free("AWS (moto)", self._aws_port)
        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)  # one access-log line per SQS poll is noise
        moto_speedups.speed_up_moto()
        moto_patches.install()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._aws_port, verbose=False)
        server.start()
        self._moto = server
        host, port = server.get_host_and_port()
        self._urls["aws"] = f"http://{host}:{port}"

    def _start_stripe(self) -> None:
        if self._stripe_port:
            _ensure_port_free("Stripe emulator", self._stripe_port)
        emulator = StripeEmulator(host="127.0.0.1", port=self._stripe_port)
        self._urls["stripe"] = emulator.start()
        self._stripe = emulator

    def _bind_gateway(self) -> None:
        gateway = _Gateway(
            RouteTable(self._topology.routes), self._invoke, self._admin, self._wake_tailers
        )
        try:
            self._server = _GatewayServer(gateway, self._api_port)
        except OSError as exc:
            raise PortInUseError("API gateway", self._api_port) from exc
        self._urls["api"] = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _set_environment(self) -> None:
        topology = self._topology
        changes: dict[str, str | None] = {
            "AWS_ENDPOINT_URL": self._urls["aws"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "AWS_PROFILE": None,
            "AWS_DEFAULT_PROFILE": None,
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": None,
            "BILLOW_TABLE_NAME": topology.table.name,
            "BILLOW_EVENT_BUS_NAME": topology.bus_name,
            "BILLOW_SECRETS_PREFIX": SECRETS_PREFIX,
            "BILLOW_PUBLIC_API_URL": self._urls["api"],
            "BILLOW_STRIPE_API_BASE": self._urls["stripe"],
            "BILLOW_WEBHOOK_RETRY_BASE_S": str(self._webhook_retry_base_s),
        }
        # Service-specific endpoints would win over AWS_ENDPOINT_URL and reach past moto;
        # queue URLs and topic ARNs of another runtime or shell would reach past this one.
        stale = ("AWS_ENDPOINT_URL_", QUEUE_URL_PREFIX, TOPIC_ARN_PREFIX)
        changes.update({key: None for key in os.environ if key.startswith(stale)})
        self._change_environment(changes)
        session, url = boto3.session.Session(region_name=REGION), self._urls["aws"]
        self._clients = {
            "dynamodb": session.client("dynamodb", endpoint_url=url),
            "dynamodbstreams": session.client("dynamodbstreams", endpoint_url=url),
            "events": session.client("events", endpoint_url=url),
            "sns": session.client("sns", endpoint_url=url),
            "sqs": session.client("sqs", endpoint_url=url),
            "sts": session.client("sts", endpoint_url=url),
        }

    def _set_resource_environment(self) -> None:
        """``BILLOW_QUEUE_URL_*`` and ``BILLOW_TOPIC_ARN_*``, once the resources exist."""
        functions = self._topology.functions
        sent_to = {name for function in functions for name in function.sends_to}
        published_to = {name for function in functions for name in function.publishes_to}
        changes: dict[str, str | None] = {
            env_name(QUEUE_URL_PREFIX, name): self._queues[name].url for name in sorted(sent_to)
        }
        changes.update(
            {env_name(TOPIC_ARN_PREFIX, name): self._topics[name].arn for name in published_to}
        )
        self._change_environment(changes)

    def _change_environment(self, changes: dict[str, str | None]) -> None:
        """Apply ``changes`` (None unsets), remembering the first value of each for ``stop``."""
        for key, value in changes.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _forget_process_caches()

    def _create_resources(self) -> None:
        topology = self._topology
        dynamodb, events = self._clients["dynamodb"], self._clients["events"]
        table = topology.table
        keys = dict.fromkeys(
            [table.partition_key, table.sort_key]
            + [key for index in table.indexes for key in (index.partition_key, index.sort_key)]
        )
        created = dynamodb.create_table(
            TableName=table.name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[
                {"AttributeName": table.partition_key, "KeyType": "HASH"},
                {"AttributeName": table.sort_key, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": (
                        {"ProjectionType": "ALL"}
                        if index.projected is None
                        else {
                            "ProjectionType": "INCLUDE",
                            "NonKeyAttributes": list(index.projected),
                        }
                        if index.projected
                        else {"ProjectionType": "KEYS_ONLY"}
                    ),
                }
                for index in table.indexes
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        self._cleanups.append(lambda: dynamodb.delete_table(TableName=table.name))
        self._stream_arn = created["TableDescription"]["LatestStreamArn"]
        dynamodb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )

        bus = topology.bus_name
        events.create_event_bus(Name=bus)
        self._cleanups.append(lambda: events.delete_event_bus(Name=bus))

        for queue in topology.queues:
            self._queues[queue.name] = self._create_queue(queue)

        for topic in topology.topics:
            self._topics[topic.name] = self._create_topic(topic)
            self._topic_messages[topic.name] = []

        for rule in topology.rules:
            events.put_rule(
                Name=rule.name,
                EventBusName=bus,
                EventPattern=json.dumps(rule.event_pattern),
                Description=rule.description,
                State="ENABLED",
            )
            target = {
                "Id": rule.queue,
                "Arn": self._queues[rule.queue].arn,
                "InputTransformer": EVENT_ENVELOPE,
            }
            events.put_targets(Rule=rule.name, EventBusName=bus, Targets=[target])
            self._cleanups.append(functools.partial(self._delete_rule, rule.name, rule.queue))

    def _delete_rule(self, name: str, target: str) -> None:
        events, bus = self._clients["events"], self._topology.bus_name
        events.remove_targets(Rule=name, EventBusName=bus, Ids=[target])
        events.delete_rule(Name=name, EventBusName=bus)

    def _create_queue(self, queue: Queue) -> _QueueResources:
        sqs = self._clients["sqs"]
        dlq_url = sqs.create_queue(
            QueueName=f"{queue.name}-dlq",
            Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
        )["QueueUrl"]
        self._cleanups.append(lambda: sqs.delete_queue(QueueUrl=dlq_url))
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        visibility = self._visibility_timeout_s or queue.visibility_timeout_s
        redrive = {
            "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
            "maxReceiveCount": queue.max_receive_count,
        }
        url = sqs.create_queue(
            QueueName=queue.name,
            Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        self._cleanups.append(lambda: sqs.delete_queue(QueueUrl=url))
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return _QueueResources(queue, url, arn["Attributes"]["QueueArn"], dlq_url)

    def _create_topic(self, topic: Topic) -> _TopicResources:
        """The topic and its inbox: an SQS queue subscribed the way AWS subscribes one
        (not raw), so each message is SNS's JSON notification, subject included."""
        sns, sqs = self._clients["sns"], self._clients["sqs"]
        arn = sns.create_topic(Name=topic.name)["TopicArn"]
        self._cleanups.append(lambda: sns.delete_topic(TopicArn=arn))
        inbox_url = sqs.create_queue(
            QueueName=f"{topic.name}-topic-inbox",
            Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
        )["QueueUrl"]
        self._cleanups.append(lambda: sqs.delete_queue(QueueUrl=inbox_url))
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])
        subscription = sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=inbox_arn["Attributes"]["QueueArn"],
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        self._cleanups.append(lambda: sns.unsubscribe(SubscriptionArn=subscription))
        return _TopicResources(topic, arn, inbox_url)

    def _start_workers(self, account_id: str) -> None:
        assert self._server is not None
        self._server.gateway.account_id = account_id
        threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="billow-local-gateway",
                daemon=True,
            )
        ]
        for resources in self._queues.values():
            poller = _QueuePoller(
                resources,
                self._clients["sqs"],
                self._invoke,
                self._activity,
                self._stopping,
                self._wake_tailers,
            )
            threads.append(poller.thread)
        for consumer in self._topology.stream_consumers:
            tailer = _StreamTailer(
                consumer,
                self._stream_arn,
                self._clients["dynamodbstreams"],
                self._invoke,
                self._activity,
                self._stopping,
            )
            self._tailers.append(tailer)
            threads.append(tailer.thread)
        for thread in threads:  # the gateway first: stop() shuts it down once this is non-empty
            thread.start()
            self._threads.append(thread)

    # -- internals ------------------------------------------------------------------------

    def _require_started(self) -> _Functions:
        if self._functions is None:
            raise RuntimeError("LocalRuntime is not started")
        return self._functions

    def _url(self, name: str) -> str:
        self._require_started()
        return self._urls[name]

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self._require_started().invoke(function, event)

    def _wake_tailers(self) -> None:
        """An invocation may have written to the table: let the tailers look right away."""
        for tailer in self._tailers:
            tailer.wake.set()

    def _queue(self, name: str) -> _QueueResources:
        self._require_started()
        if name not in self._queues:
            raise KeyError(f"no queue {name!r} in this runtime's topology")
        return self._queues[name]

    def _queue_counts(self, resources: _QueueResources) -> dict[str, int]:
        """The queue's visible, in-flight and delayed messages, and its DLQ's size."""
        sqs, names = self._clients["sqs"], ("Messages", "MessagesNotVisible", "MessagesDelayed")
        wanted = [f"ApproximateNumberOf{name}" for name in names]
        source = sqs.get_queue_attributes(QueueUrl=resources.url, AttributeNames=wanted)
        dlq = sqs.get_queue_attributes(QueueUrl=resources.dlq_url, AttributeNames=wanted[:2])
        counts = {name: int(source["Attributes"][f"ApproximateNumberOf{name}"]) for name in names}
        counts["DLQ"] = sum(int(n) for n in dlq["Attributes"].values())
        return counts

    def _drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Receive everything a (DLQ) queue holds, hidden for a while from other readers."""
        messages: list[dict[str, Any]] = []
        while (
            batch := self._clients["sqs"]
            .receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        ):
            messages.extend(batch)
        return messages

    def _admin(self, request: HttpRequest) -> HttpResponse:
        """The local-only endpoints under ``/_local/``; never part of the deployed stack."""
        path = urlsplit(request.target).path
        topic = _TOPIC_MESSAGES_PATH.fullmatch(path)
        if topic is not None:
            if request.method != "GET":
                return _error(405, "Method Not Allowed", "method_not_allowed")
            return self._admin_topic_messages(unquote(topic["name"]))
        fire = _FIRE_PATH.fullmatch(path)
        if path != "/_local/organizations" and fire is None:
            return _error(404, "Not Found", "not_found")
        if request.method != "POST":
            return _error(405, "Method Not Allowed", "method_not_allowed")
        try:
            payload = None if nests_deeper_than(request.body) else json.loads(request.body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return _error(400, "Bad Request", "bad_request", {"body": ["invalid_json_object"]})
        if fire is not None:
            return self._admin_fire(unquote(fire["name"]), payload)
        return self._admin_create_organization(payload)

    def _admin_create_organization(self, payload: dict[str, Any]) -> HttpResponse:
        name, api_key = payload.get("name"), payload.get("api_key")
        details: dict[str, list[str]] = {}
        if not isinstance(name, str) or not name.strip():
            details["name"] = ["value_is_mandatory"]
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            details["api_key"] = ["invalid_value"]
        if details:
            return _error(422, "Unprocessable Entity", "validation_errors", details)
        try:
            organization = self.create_organization(str(name), api_key)
        except ValidationFailed as refused:
            return _error(422, "Unprocessable Entity", refused.code, refused.details)
        return json_response(
            200,
            {
                "organization": organization.model_dump(
                    include={"id", "name", "api_key", "hmac_key"}
                )
            },
        )

    def _admin_topic_messages(self, name: str) -> HttpResponse:
        try:
            messages = self.topic_messages(name)
        except UnknownTopicError:
            return _error(404, "Not Found", "topic_not_found")
        return json_response(200, {"topic": name, "messages": messages})

    def _admin_fire(self, name: str, payload: dict[str, Any]) -> HttpResponse:
        raw_time = payload.get("time")
        try:
            moment = datetime.fromisoformat(raw_time) if isinstance(raw_time, str) else None
        except ValueError:
            moment = None
        if moment is None:
            return _error(
                422, "Unprocessable Entity", "validation_errors", {"time": ["invalid_value"]}
            )
        try:
            result = self.fire_schedule(name, moment)
        except UnknownScheduleError:
            return _error(404, "Not Found", "schedule_not_found")
        except ScheduleTimeOutOfRangeError:
            return _error(
                422,
                "Unprocessable Entity",
                "validation_errors",
                {"time": ["value_is_out_of_range"]},
            )
        except Exception as exc:
            _log_handler_failure(f"schedule {name}", f"a firing at {schedule_time(moment)}")
            return _error(500, "Internal Server Error", "handler_error", {"exception": repr(exc)})
        return json_response(
            200, {"schedule": name, "time": schedule_time(moment), "result": result}
        )
