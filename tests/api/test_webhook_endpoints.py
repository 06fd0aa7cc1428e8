"""Lago webhook endpoints and signed, retried, replayable deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from billow.adapters.http_sender import Delivery
from billow.composition import dependencies
from billow.domain.events import webhook_event
from billow.services.webhook_delivery import deliver
from tests.api.dynamodb_calls import dynamodb_calls
from tests.api.test_customers import webhooks
from tests.conftest import WebhookReceiver


def test_endpoint_crud_is_lago_shaped(org: Any) -> None:
    status, body = org.api.post(
        "/webhook_endpoints",
        json={
            "webhook_endpoint": {
                "webhook_url": "https://hooks.example.test/a",
                "signature_algo": "hmac",
                "name": "prod",
            }
        },
    )
    assert status == 200
    endpoint = body["webhook_endpoint"]
    assert endpoint["lago_organization_id"] == org.id
    assert endpoint["signature_algo"] == "hmac" and endpoint["event_types"] is None
    lago_id = endpoint["lago_id"]

    assert org.api.get(f"/webhook_endpoints/{lago_id}")[1]["webhook_endpoint"]["name"] == "prod"
    status, body = org.api.put(
        f"/webhook_endpoints/{lago_id}",
        json={
            "webhook_endpoint": {
                "webhook_url": "https://hooks.example.test/b",
                "event_types": ["customer.created"],
            }
        },
    )
    assert status == 200 and body["webhook_endpoint"]["event_types"] == ["customer.created"]
    listed = org.api.get("/webhook_endpoints")[1]
    assert listed["meta"]["total_count"] == 1
    assert listed["webhook_endpoints"][0]["webhook_url"] == "https://hooks.example.test/b"
    assert org.api.delete(f"/webhook_endpoints/{lago_id}")[0] == 200
    assert org.api.get(f"/webhook_endpoints/{lago_id}")[0] == 404


def test_endpoint_validation(org: Any) -> None:
    status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": "not a url"}}
    )
    assert status == 422 and "webhook_url" in body["error_details"]
    status, body = org.api.post(
        "/webhook_endpoints",
        json={"webhook_endpoint": {"webhook_url": "https://x.test", "signature_algo": "rsa"}},
    )
    assert status == 422 and "signature_algo" in body["error_details"]
    assert (
        org.api.post(
            "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": "https://x.test/1"}}
        )[0]
        == 200
    )
    status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": "https://x.test/1"}}
    )
    assert status == 422 and body["error_details"] == {"webhook_url": ["value_already_exist"]}
    for index in range(2, 11):
        org.api.post(
            "/webhook_endpoints",
            json={"webhook_endpoint": {"webhook_url": f"https://x.test/{index}"}},
        )
    status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": "https://x.test/11"}}
    )
    assert status == 422 and body["error_details"] == {"base": ["exceeded_limit"]}


def test_deliveries_are_signed_with_the_organizations_hmac_key(
    org: Any, subscribed: Any, wait_for: Any
) -> None:
    org.api.post("/customers", json={"customer": {"external_id": "signed"}})
    wait_for(lambda: webhooks(subscribed, "customer.created"))
    request = subscribed.requests[0]
    headers = {name.lower(): value for name, value in request.headers.items()}
    expected = base64.b64encode(
        hmac.new(org.hmac_key.encode(), request.body, hashlib.sha256).digest()
    ).decode()
    assert headers["x-lago-signature"] == expected
    assert headers["x-lago-signature-algorithm"] == "hmac"
    assert headers["x-lago-unique-key"]


def test_event_types_filter(
    org: Any, webhook_receiver: Any, wait_for: Any, local_billow: Any
) -> None:
    org.api.post(
        "/webhook_endpoints",
        json={
            "webhook_endpoint": {
                "webhook_url": webhook_receiver.url,
                "event_types": ["customer.updated"],
            }
        },
    )
    org.api.post("/customers", json={"customer": {"external_id": "f"}})
    org.api.post("/customers", json={"customer": {"external_id": "f", "name": "N"}})
    wait_for(lambda: webhooks(webhook_receiver, "customer.updated"))
    local_billow.wait_idle()
    assert {json.loads(r.body)["webhook_type"] for r in webhook_receiver.requests} == {
        "customer.updated"
    }


def test_failed_deliveries_are_retried_with_the_same_unique_key(
    org: Any, subscribed: Any, wait_for: Any
) -> None:
    subscribed.fail_next(2)
    org.api.post("/customers", json={"customer": {"external_id": "retry"}})
    wait_for(lambda: len(subscribed.requests) >= 3)
    keys = {request.headers["X-Lago-Unique-Key"] for request in subscribed.requests}
    assert len(keys) == 1
    assert len({request.body for request in subscribed.requests}) == 1


def test_endpoint_down_ends_in_dlq_and_replay_delivers(
    org: Any, subscribed: Any, wait_for: Any, local_billow: Any
) -> None:
    subscribed.fail_next(1000)
    org.api.post("/customers", json={"customer": {"external_id": "down"}})
    wait_for(
        lambda: any(org.id in body for body in local_billow.dlq_messages("webhook-delivery")),
        timeout=60,
    )
    attempts = len(subscribed.requests)
    assert attempts >= 2
    subscribed.fail_next(0)
    local_billow.redrive_dlq("webhook-delivery")
    wait_for(lambda: len(subscribed.requests) > attempts)
    local_billow.wait_idle()
    assert not any(org.id in body for body in local_billow.dlq_messages("webhook-delivery"))


def test_a_retry_goes_only_to_the_endpoint_that_failed(
    org: Any, wait_for: Any, local_billow: Any
) -> None:
    """Two endpoints; one refuses the first delivery. The message comes back for it alone:
    the healthy endpoint gets the event once, the failing one twice, both with one key."""
    healthy, flaky = WebhookReceiver(), WebhookReceiver()
    for receiver in (healthy, flaky):
        receiver.start()
        status, _ = org.api.post(
            "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": receiver.url}}
        )
        assert status == 200
    try:
        flaky.fail_next(1)
        org.api.post("/customers", json={"customer": {"external_id": "two-endpoints"}})
        wait_for(lambda: [r.answered for r in flaky.requests] == [500, 200], timeout=30)
        local_billow.wait_idle()
        assert [r.answered for r in healthy.requests] == [200]
        keys = {r.headers["X-Lago-Unique-Key"] for r in healthy.requests + flaky.requests}
        assert len(keys) == 1
    finally:
        healthy.stop()
        flaky.stop()


def test_the_organizations_hmac_key_is_read_once_per_process(org: Any, subscribed: Any) -> None:
    """The key never changes once made: each delivery after the first signs without
    reading the organization again (the first reads it with the endpoints)."""
    sent: list[tuple[bytes, dict[str, str]]] = []

    def send(url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        sent.append((body, headers))
        return Delivery(True, "HTTP 200")

    organization_reads = []
    for n in range(3):
        event = webhook_event(org.id, "customer.updated", "customer", {"external_id": f"c{n}"})
        with dynamodb_calls() as calls:
            assert deliver(dependencies(), event, send) == []
        organization_reads.append(len(calls.naming("ORGANIZATION")))
    assert organization_reads == [1, 0, 0]
    assert len(sent) == 3
    for body, headers in sent:
        expected = base64.b64encode(
            hmac.new(org.hmac_key.encode(), body, hashlib.sha256).digest()
        ).decode()
        assert headers["X-Lago-Signature"] == expected
