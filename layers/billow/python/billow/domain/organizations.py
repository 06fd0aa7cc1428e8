"""Organizations (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import secrets

from pydantic import BaseModel, Field


class Organization(BaseModel):
    id: str
    name: str
    hmac_key: str
    """Signs outgoing webhooks (``X-Lago-Signature``)."""
    created_at: str
    document_number_prefix: str
    timezone: str = "UTC"
    """Billing days of customers without a timezone of their own fall on this zone's dates."""
    payment_retry_delays_days: list[int] = Field(default_factory=lambda: [3, 5, 7])
    """Dunning: days after each failed charge before the next automatic retry."""


def generate_api_key() -> str:
    return secrets.token_urlsafe(32)


def generate_hmac_key() -> str:
    return secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """API keys are stored only as this digest: a leaked table does not leak keys."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def document_prefix(name: str, organization_id: str) -> str:
    """Lago's default prefix: three letters of the name and the id's last four characters."""
    letters = "".join(ch for ch in name.upper() if ch.isalnum())[:3] or "ORG"
    return f"{letters}-{organization_id[-4:].upper()}"


def organization_as_lago(organization: Organization) -> dict[str, object]:
    return {
        "lago_id": organization.id,
        "name": organization.name,
        "created_at": organization.created_at,
        "timezone": organization.timezone,
        "document_number_prefix": organization.document_number_prefix,
        "document_numbering": "per_organization",
        "billing_configuration": {
            "invoice_grace_period": 0,
            "document_locale": "en",
            "payment_retry_delays_days": organization.payment_retry_delays_days,
        },
    }
