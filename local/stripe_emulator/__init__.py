"""A stateful Stripe emulator for Billow's local mode (dev only, never deployed).

localstripe extended with accounts opened by API keys, Checkout Sessions and a hosted
checkout page, the WebhookEndpoint API with signed per-account delivery, Idempotency-Key
replay, the PaymentIntent and Refund behaviour Billow relies on, and ``/_config``
endpoints for tests (revoked and rolled keys, injected faults, dropped webhook
deliveries, request counts; see ``controls``).
Drive it with the official SDK::

    emulator = StripeEmulator()
    url = emulator.start()
    client = stripe.StripeClient(
        "sk_test_...", base_addresses={"api": url, "files": url, "connect": url}
    )
"""

from .server import StripeEmulator

__all__ = ["StripeEmulator"]
