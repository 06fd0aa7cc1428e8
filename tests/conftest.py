"""Fixtures the whole suite shares: one local Billow per session, a fresh organization per
test with a small JSON client bound to its API key that checks each response against
``docs/openapi.json``, and a webhook receiver (the helpers themselves are in
``tests.support``, which the benchmarks use too)."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.runtime import LocalRuntime
from tests import support
from tests.openapi_contract import check_response
from tests.support import Org, WebhookReceiver, http_json, wait_for

__all__ = ["ApiClient", "Org", "WebhookReceiver", "http_json", "wait_for"]


class ApiClient(support.ApiClient):
    """The shared client, holding every response to what ``docs/openapi.json`` describes."""

    def request(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        status, body = super().request(method, path, json)
        check_response(method, self.url(path), status, body)
        return status, body


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(scope="session")
def local_billow() -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(visibility_timeout_s=1, retry_base_s=0)
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
    disconnect_stripe(organization.api)


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


def disconnect_stripe(api: ApiClient) -> None:
    """The hourly sweep reads the Stripe events of every connected organization: a test's
    organization leaves none behind, so a later test's sweep reads only its own."""
    code, body = api.get("/integrations/stripe")
    for connection in body.get("integrations", []) if code == 200 else []:
        api.delete(f"/integrations/stripe/{connection['code']}")


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
