"""Organizations (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import secrets

from pydantic import BaseModel


class Organization(BaseModel):
    id: str
    name: str
    hmac_key: str
    """Signs outgoing webhooks (``X-Lago-Signature``)."""
    created_at: str
    document_number_prefix: str


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
