"""Outgoing webhooks: endpoints, Lago's envelope and its HMAC signature."""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import BaseModel

MAX_ENDPOINTS_PER_ORGANIZATION = 10


class WebhookEndpoint(BaseModel):
    lago_id: str
    organization_id: str
    webhook_url: str
    signature_algo: str = "hmac"
    name: str | None = None
    event_types: list[str] | None = None
    created_at: str
    created_ns: int = 0
    """Creation time in nanoseconds: ``created_at`` has only seconds, and the order of
    endpoints created within one second matters (the first is the organization's
    ``webhook_url``)."""

    def wants(self, webhook_type: str) -> bool:
        return self.event_types is None or webhook_type in self.event_types

    def as_lago(self) -> dict[str, object]:
        return {
            "lago_id": self.lago_id,
            "lago_organization_id": self.organization_id,
            "webhook_url": self.webhook_url,
            "signature_algo": self.signature_algo,
            "name": self.name,
            "event_types": self.event_types,
            "created_at": self.created_at,
        }


def envelope(
    webhook_type: str, object_type: str, organization_id: str, obj: dict[str, object]
) -> dict[str, object]:
    """Lago's webhook body: ``{webhook_type, object_type, organization_id, <object_type>}``."""
    return {
        "webhook_type": webhook_type,
        "object_type": object_type,
        "organization_id": organization_id,
        object_type: obj,
    }


def sign(body: bytes, hmac_key: str) -> str:
    """``X-Lago-Signature``: Base64 of HMAC-SHA256 of the raw body with the organization's key."""
    digest = hmac.new(hmac_key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def delivery_headers(body: bytes, hmac_key: str, unique_key: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Billow",
        "X-Lago-Signature": sign(body, hmac_key),
        "X-Lago-Signature-Algorithm": "hmac",
        "X-Lago-Unique-Key": unique_key,
    }


def retry_delay_s(attempt: int, base_s: int) -> int:
    """Backoff before delivery attempt ``attempt + 1``: base, 2×base, 4×base … capped at 12 h
    (the longest visibility timeout SQS accepts)."""
    return int(min(base_s * 2 ** max(attempt - 1, 0), 43_200))
