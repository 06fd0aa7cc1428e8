"""Stripe's webhook deliveries: verified, stored once, processed asynchronously."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from tests.api.conftest import StripeOrg, attach_card


def webhook_secret(local_billow: Any, org_id: str) -> str:
    secrets = boto3.client(
        "secretsmanager", endpoint_url=local_billow.aws_url, region_name="us-east-1"
    )
    value = secrets.get_secret_value(SecretId=f"billow/local/{org_id}/stripe/stripe")[
        "SecretString"
    ]
    return str(json.loads(value)["webhook_secret"])


def deliver(
    local_billow: Any, org_id: str, body: bytes, header: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {
        "Content-Type": "application/json",
        **({"Stripe-Signature": header} if header else {}),
    }
    request = urllib.request.Request(
        f"{local_billow.api_url}/webhooks/stripe/{org_id}?code=stripe",
        data=body,
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def signed(body: bytes, secret: str, at: int | None = None) -> str:
    timestamp = at if at is not None else int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(
    event_id: str,
    kind: str,
    obj: dict[str, Any],
    created: int | None = None,
    idempotency_key: str | None = None,
) -> bytes:
    """A Stripe event body. ``created`` defaults to now; ``idempotency_key`` is that of the
    API request that caused it (None for the dashboard or a hosted page)."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": int(time.time()) if created is None else created,
            "data": {"object": obj},
            "request": {
                "id": f"req_{event_id.removeprefix('evt_')}" if idempotency_key else None,
                "idempotency_key": idempotency_key,
            },
        }
    ).encode()


def linked_customer(stripe_org: StripeOrg, external_id: str) -> str:
    body = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": external_id,
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "sync": True,
                    "sync_with_provider": True,
                },
            }
        },
    )[1]
    return str(body["customer"]["billing_configuration"]["provider_customer_id"])


def test_forged_stale_and_malformed_deliveries_are_400(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    secret = webhook_secret(local_billow, stripe_org.id)
    body = event(
        "evt_forged1", "payment_method.detached", {"id": "pm_x", "object": "payment_method"}
    )
    assert deliver(local_billow, stripe_org.id, body, None)[0] == 400
    assert deliver(local_billow, stripe_org.id, body, signed(body, "whsec_wrong"))[0] == 400
    assert (
        deliver(local_billow, stripe_org.id, body, signed(body, secret, int(time.time()) - 301))[0]
        == 400
    )
    assert deliver(local_billow, stripe_org.id, body, "t=abc,v1=zzz")[0] == 400
    tampered = body.replace(b"pm_x", b"pm_y")
    assert deliver(local_billow, stripe_org.id, tampered, signed(body, secret))[0] == 400
    garbage = b"[1, 2, 3]"
    assert deliver(local_billow, stripe_org.id, garbage, signed(garbage, secret))[0] == 400
    assert (
        deliver(local_billow, "00000000-0000-0000-0000-000000000000", body, signed(body, secret))[0]
        == 400
    )
    status, reply = deliver(local_billow, stripe_org.id, body, signed(body, secret))
    assert status == 200 and reply["outcome"] == "stored"


def test_unhandled_types_are_acknowledged_and_ignored(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    secret = webhook_secret(local_billow, stripe_org.id)
    body = event("evt_other1", "balance.available", {"object": "balance"})
    status, reply = deliver(local_billow, stripe_org.id, body, signed(body, secret))
    assert status == 200 and reply["outcome"] == "ignored"


def setup_intent_succeeded(
    local_billow: Any, stripe_org: StripeOrg, event_id: str, customer: str, method: str
) -> str:
    """Deliver a signed ``setup_intent.succeeded`` as Stripe would; returns the outcome."""
    secret = webhook_secret(local_billow, stripe_org.id)
    body = event(
        event_id,
        "setup_intent.succeeded",
        {
            "id": "seti_" + event_id,
            "object": "setup_intent",
            "customer": customer,
            "payment_method": method,
        },
    )
    status, reply = deliver(local_billow, stripe_org.id, body, signed(body, secret))
    assert status == 200, reply
    return str(reply["outcome"])


def test_duplicate_event_is_processed_once(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    stripe_id = linked_customer(stripe_org, "dup")
    card_id = attach_card(stripe_org.stripe, stripe_id)
    outcomes = [
        setup_intent_succeeded(local_billow, stripe_org, "evt_dup_setup", stripe_id, card_id)
        for _ in range(3)
    ]
    assert outcomes == ["stored", "duplicate", "duplicate"]
    local_billow.wait_idle()
    methods = stripe_org.api.get("/customers/dup/payment_methods")[1]["payment_methods"]
    assert [(m["provider_method_id"], m["is_default"]) for m in methods] == [(card_id, True)]
    assert (
        stripe_org.stripe.v1.customers.retrieve(stripe_id).invoice_settings.default_payment_method
        == card_id
    )


def test_events_for_unknown_customers_change_nothing(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    outcome = setup_intent_succeeded(
        local_billow, stripe_org, "evt_stranger", "cus_stranger", "pm_x"
    )
    assert outcome == "stored"
    local_billow.wait_idle()
    assert stripe_org.api.get("/customers")[1]["customers"] == []


def stripe_outage(local_billow: Any, stripe_org: StripeOrg, path: str, count: int) -> None:
    fault = {"api_key": stripe_org.secret_key, "path_prefix": path, "status": "503"}
    data = urllib.parse.urlencode({**fault, "count": str(count)}).encode()
    urllib.request.urlopen(f"{local_billow.stripe_url}/_config/faults", data=data)


def stored_event(local_billow: Any, organization_id: str, event_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb", endpoint_url=local_billow.aws_url, region_name="us-east-1")
    key = {"PK": f"ORG#{organization_id}", "SK": f"STRIPE_EVENT#{event_id}"}
    return dict(table.Table("billow").get_item(Key=key, ConsistentRead=True)["Item"])


@pytest.mark.usefixtures("quick_sdk_retries")
def test_sweep_recovers_events_that_failed_while_stripe_was_down(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Stripe is down while the event is processed: every retry fails and the message
    ends in the DLQ. Once Stripe is back, the scheduled sweep hands the event back."""
    stripe_id = linked_customer(stripe_org, "sweep")
    card_id = attach_card(stripe_org.stripe, stripe_id)
    stripe_outage(local_billow, stripe_org, "/v1/customers/", 1000)
    outcome = setup_intent_succeeded(local_billow, stripe_org, "evt_sweep_me", stripe_id, card_id)
    assert outcome == "stored"

    def dead_letters() -> int:
        return sum(stripe_org.id in body for body in local_billow.dlq_messages("stripe-events"))

    wait_for(dead_letters, timeout=60)
    assert stored_event(local_billow, stripe_org.id, "evt_sweep_me")["status"] == "received"
    stripe_outage(local_billow, stripe_org, "/v1/customers/", 0)

    def republished(result: dict[str, Any]) -> int:
        return sum(
            repairs["events_republished"]
            for repairs in result["organizations"]
            if repairs["organization_id"] == stripe_org.id
        )

    too_early = local_billow.fire_schedule("stripe-events-sweep", datetime.now(UTC))
    assert republished(too_early) == 0
    result = local_billow.fire_schedule(
        "stripe-events-sweep", datetime.now(UTC) + timedelta(minutes=16)
    )
    assert republished(result) == 1
    assert result["repaired"] >= 1
    wait_for(
        lambda: stored_event(local_billow, stripe_org.id, "evt_sweep_me")["status"] == "processed"
    )
    methods = stripe_org.api.get("/customers/sweep/payment_methods")[1]["payment_methods"]
    assert [(m["provider_method_id"], m["is_default"]) for m in methods] == [(card_id, True)]


def test_a_refusal_stripe_will_repeat_is_recorded_once_and_not_retried(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    stripe_id = linked_customer(stripe_org, "refused")
    outcome = setup_intent_succeeded(local_billow, stripe_org, "evt_refused", stripe_id, "pm_gone")
    assert outcome == "stored"
    stored = wait_for(
        lambda: (
            (item := stored_event(local_billow, stripe_org.id, "evt_refused"))["status"]
            != "received"
            and item
        )
    )
    assert stored["status"] == "failed"
    assert "pm_gone" in stored["processing_error"]
    local_billow.wait_idle()
    assert not any(stripe_org.id in body for body in local_billow.dlq_messages("stripe-events"))
