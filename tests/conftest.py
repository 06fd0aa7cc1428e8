"""Fixtures the whole suite shares: one local Billow per session, a fresh organization per
test with a small JSON client bound to its API key, and a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from local.runtime import LocalRuntime
from tests.openapi_contract import check_response

T = TypeVar("T")


def http_json(
    method: str, url: str, payload: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One JSON request with urllib: ``(status, decoded body)``; error statuses are returned."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class ApiClient:
    """Billow's Lago API as an organization sees it; paths are relative to ``/api/v1``."""

    def __init__(self, api_url: str, api_key: str) -> None:
        self.base_url = f"{api_url}/api/v1"
        self.api_key = api_key

    def request(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """One call; its response must be one ``docs/openapi.json`` describes."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        status, body = http_json(method, url, json, {"Authorization": f"Bearer {self.api_key}"})
        check_response(method, url, status, body)
        return status, body

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


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(scope="session")
def local_billow() -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(visibility_timeout_s=1, webhook_retry_base_s=0)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def org(local_billow: LocalRuntime) -> Iterator[Org]:
    """A fresh organization, created the way an operator does (the local admin endpoint).

    Billing runs are global, as in production: a test that fires one at a later date bills
    every subscription due by then. Each test's subscriptions end with it, so later runs
    never bill what an earlier test left behind."""
    name = f"Test org {uuid.uuid4().hex[:8]}"
    status, body = http_json("POST", f"{local_billow.api_url}/_local/organizations", {"name": name})
    assert status == 200, body
    created = body["organization"]
    organization = Org(
        id=created["id"],
        name=created["name"],
        api_key=created["api_key"],
        hmac_key=created["hmac_key"],
        api=ApiClient(local_billow.api_url, created["api_key"]),
    )
    yield organization
    end_subscriptions(organization.api)


def end_subscriptions(api: ApiClient) -> None:
    for status in ("active", "pending"):
        ended: set[str] = set()
        while True:
            code, body = api.get(f"/subscriptions?status[]={status}&per_page=100")
            left = [s for s in body.get("subscriptions", []) if s["lago_id"] not in ended]
            if code != 200 or not left:
                break
            for subscription in left:
                ended.add(subscription["lago_id"])
                api.delete(
                    f"/subscriptions/{urllib.parse.quote(subscription['external_id'], safe='')}"
                    f"?status={status}&on_termination_invoice=skip"
                )


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
    """Records every POST it gets; can be told to answer errors for a while (retry tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
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
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks"
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
            self._received.append(ReceivedRequest(path, headers, body, status))
            return status

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
