"""Verifying ``Stripe-Signature`` headers.

Written here rather than taken from the ``stripe`` package because the webhook intake
never calls Stripe: importing the SDK there would only add to its cold start.
"""

from __future__ import annotations

import hashlib
import hmac

TOLERANCE_S = 300


class SignatureError(Exception):
    pass


def verify(payload: bytes, header: str | None, secret: str, now: int) -> None:
    """Raise SignatureError unless a ``v1`` signature of ``t.payload`` matches, ``t`` fresh."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("malformed Stripe-Signature header")
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("no signature matches the payload")
    if abs(now - timestamp) > TOLERANCE_S:
        raise SignatureError("timestamp outside the tolerance zone")
