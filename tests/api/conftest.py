"""Fixtures for driving Billow the way its users do: HTTP, Stripe's SDK, signed webhooks."""

from __future__ import annotations

import json
import secrets
import string
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from tests.conftest import ApiClient, Org


def new_stripe_key() -> str:
    """A fresh test-mode key: in the emulator a new key opens a new Stripe account."""
    alphabet = string.ascii_letters + string.digits
    return "sk_test_" + "".join(secrets.choice(alphabet) for _ in range(24))


class StripeOrg:
    """An organization connected to its own Stripe (emulator) account."""

    def __init__(self, org: Any, secret_key: str, stripe_client: stripe.StripeClient) -> None:
        self.org = org
        self.secret_key = secret_key
        self.stripe = stripe_client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.org, name)


def stripe_client(base_url: str, secret_key: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        secret_key,
        base_addresses={"api": base_url, "files": base_url, "connect": base_url},
        max_network_retries=0,
    )


def attach_card(
    client: stripe.StripeClient,
    customer_id: str,
    number: str = "4242424242424242",
    default: bool = False,
) -> str:
    """A test card saved on a Stripe customer directly in Stripe (not through Billow)."""
    card = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(card.id, params={"customer": customer_id})
    if default:
        client.v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
        )
    return card.id


def revoke_stripe_key(local_billow: Any, secret_key: str) -> None:
    """Stripe refuses the key from now on, as after it is deleted in the dashboard."""
    request = urllib.request.Request(
        f"{local_billow.stripe_url}/_config/revoked_keys",
        data=json.dumps({"api_key": secret_key}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def another_stripe_org(local_billow: Any) -> StripeOrg:
    """A second organization, with its own Stripe account."""
    created = local_billow.create_organization(f"Other org {uuid.uuid4().hex[:8]}")
    org = Org(
        id=created.id,
        name=created.name,
        api_key=created.api_key,
        hmac_key=created.hmac_key,
        api=ApiClient(local_billow.api_url, created.api_key),
    )
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": key, "create_customers": False}},
    )
    assert status == 200, body
    return StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


@pytest.fixture
def stripe_org(local_billow: Any, org: Any) -> Iterator[StripeOrg]:
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": key, "create_customers": False}},
    )
    assert status == 200, body
    yield StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


@pytest.fixture
def billing(local_billow: Any, org: Any) -> StripeOrg:
    """An organization whose subscriptions Stripe Billing invoices."""
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": key, "sync_catalog": True, "sync_subscriptions": True}},
    )
    assert status == 200, body
    return StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


@pytest.fixture
def subscribed(org: Any, webhook_receiver: Any) -> Iterator[Any]:
    """Registers the receiver as the organization's webhook endpoint, and removes it before
    the receiver stops (later events then have nowhere to go instead of a dead address)."""
    status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": webhook_receiver.url}}
    )
    assert status == 200, body
    yield webhook_receiver
    org.api.delete(f"/webhook_endpoints/{body['webhook_endpoint']['lago_id']}")


@pytest.fixture
def quick_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Billow's handlers run in this process: the SDK's backoff is shortened for them."""
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(stripe._http_client.HTTPClient, "MAX_DELAY", 0.02)
