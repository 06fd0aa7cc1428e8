"""Helpers shared by the tests and the benchmarks: a JSON client for Billow's API,
polling, and a webhook receiver. Neither pytest nor Billow is needed to use them."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


def http_json(
    method: str,
    url: str,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One JSON request with urllib: ``(status, decoded body)``; error statuses are returned."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def bearer(api_key: str) -> dict[str, str]:
    """The header that authenticates a call to Billow's API."""
    return {"Authorization": f"Bearer {api_key}"}


class ApiClient:
    """Billow's Lago API as an organization sees it; paths are relative to ``/api/v1``."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self.base_url = f"{api_url}/api/v1"
        self.api_key = api_key

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        return http_json(method, self.url(path), json, bearer(self.api_key))

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None) -> tuple[int, Any]:
        return self.request("POST", path, json)

    def put(self, path: str, json: Any = None) -> tuple[int, Any]:
        return self.request("PUT", path, json)

    def delete(self, path: str, json: Any = None) -> tuple[int, Any]:
        return self.request("DELETE", path, json)


@dataclass(frozen=True)
class Org:
    id: str
    name: str
    api_key: str
    hmac_key: str
    api: ApiClient


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll until ``predicate()`` is truthy and return that value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: Message
    """Looked up case-insensitively, as HTTP header names are."""
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records every POST it gets; can be told to answer errors for a while (retry tests).

    ``keep=False`` only counts them: a benchmark's hundred thousand webhooks need not stay
    in memory."""

    def __init__(self, path: str = "/webhooks", keep: bool = True) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self._received: list[ReceivedRequest] = []
        self.count = 0
        self._failure_status = 500
        self._failures_left = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver._record(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer ``status`` to the next ``count`` requests; ``fail_next(0)`` recovers."""
        with self._lock:
            self._failure_status, self._failures_left = status, count

    def _record(self, path: str, headers: Message, body: bytes) -> int:
        with self._lock:
            status = 200
            if self._failures_left > 0:
                status = self._failure_status
                self._failures_left -= 1
            self.count += 1
            if self._keep:
                self._received.append(ReceivedRequest(path, headers, body, status))
            return status

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http(
    method: str, url: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """One request as a browser or curl would send it, redirects not followed (a hosted
    page's success URL need not exist): (status, headers, body)."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()
