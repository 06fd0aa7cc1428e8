"""Connecting a Stripe account: key checks, Secrets Manager, the registered webhook endpoint."""

from __future__ import annotations

from typing import Any

import boto3

from tests.api.conftest import StripeOrg, new_stripe_key, stripe_client


def test_connect_registers_webhook_and_keeps_key_in_secrets_manager(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    status, body = stripe_org.api.get("/integrations/stripe")
    assert status == 200
    [connection] = body["integrations"]
    assert connection["code"] == "stripe" and connection["type"] == "stripe"
    assert stripe_org.secret_key not in str(body)

    endpoints = stripe_org.stripe.v1.webhook_endpoints.list().data
    assert [endpoint.id for endpoint in endpoints] == [connection["webhook_endpoint_id"]]
    endpoint = endpoints[0]
    assert endpoint.url == f"{local_billow.api_url}/webhooks/stripe/{stripe_org.id}?code=stripe"
    assert {
        "setup_intent.succeeded",
        "payment_method.detached",
        "payment_intent.payment_failed",
    } <= set(endpoint.enabled_events)

    secrets = boto3.client(
        "secretsmanager", endpoint_url=local_billow.aws_url, region_name="us-east-1"
    )
    stored = secrets.get_secret_value(SecretId=f"billow/local/{stripe_org.id}/stripe/stripe")
    assert stripe_org.secret_key in stored["SecretString"]
    assert "whsec_" in stored["SecretString"]


def test_publishable_and_rejected_keys_are_422_and_change_nothing(org: Any) -> None:
    status, body = org.api.post(
        "/integrations/stripe", json={"integration": {"secret_key": "pk_test_abcdefghijklmnop1234"}}
    )
    assert status == 422
    assert body["error_details"] == {"secret_key": ["publishable_key_not_allowed"]}

    status, body = org.api.post(
        "/integrations/stripe", json={"integration": {"secret_key": "sk_test_short"}}
    )
    assert status == 422
    assert body["code"] == "third_party_error"
    assert body["error_details"]["third_party"] == "stripe"
    assert body["error_details"]["thirdparty_error"]

    status, body = org.api.post("/integrations/stripe", json={"integration": {"secret_key": 42}})
    assert status == 422 and body["error_details"] == {"secret_key": ["invalid_type"]}
    assert org.api.get("/integrations/stripe")[1]["integrations"] == []


def test_rotating_the_key_moves_the_webhook_and_delete_removes_it(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    old_endpoint = stripe_org.api.get("/integrations/stripe")[1]["integrations"][0][
        "webhook_endpoint_id"
    ]
    new_key = new_stripe_key()
    status, body = stripe_org.api.post(
        "/integrations/stripe",
        json={
            "integration": {
                "secret_key": new_key,
                "success_redirect_url": "https://example.test/done",
            }
        },
    )
    assert status == 200
    assert body["integration"]["success_redirect_url"] == "https://example.test/done"
    assert stripe_org.stripe.v1.webhook_endpoints.list().data == []
    new_client = stripe_client(local_billow.stripe_url, new_key)
    [endpoint] = new_client.v1.webhook_endpoints.list().data
    assert endpoint.id == body["integration"]["webhook_endpoint_id"] != old_endpoint

    status, body = stripe_org.api.delete("/integrations/stripe/stripe")
    assert status == 200 and body["integration"]["code"] == "stripe"
    assert new_client.v1.webhook_endpoints.list().data == []
    assert stripe_org.api.get("/integrations/stripe")[1]["integrations"] == []
    assert stripe_org.api.delete("/integrations/stripe/stripe")[0] == 404
