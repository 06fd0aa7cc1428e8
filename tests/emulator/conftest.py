"""What the emulator's Billing tests share: an emulator per module, and a fresh Stripe
account per test (a key never seen opens one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import stripe

from local.stripe_emulator import StripeEmulator
from tests.emulator.test_stripe_emulator import Account


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    emulator = StripeEmulator(port=0)
    yield emulator.start()
    emulator.stop()


@pytest.fixture
def client(emulator_url: str) -> stripe.StripeClient:
    """A fresh account: a key never seen opens one."""
    url = emulator_url
    return stripe.StripeClient(
        "sk_test_" + uuid.uuid4().hex,
        base_addresses={"api": url, "files": url, "connect": url},
        max_network_retries=0,
    )


@pytest.fixture
def account(emulator_url: str) -> Iterator[Account]:
    """A fresh account with the helpers of the emulator's own tests; its webhook
    receivers close afterwards."""
    made = Account(emulator_url)
    yield made
    for receiver in made.receivers:
        receiver.close()
