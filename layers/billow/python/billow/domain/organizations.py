"""Organizations (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from pydantic import BaseModel, Field

from billow.domain.catalog import Tax

DOCUMENT_NUMBERING = "per_organization"
"""Billow numbers invoices across the organization (``PREFIX-YYYYMM-001``), never per customer."""


class BillingHints(BaseModel):
    """What billing may skip reading, kept beside the organization's document by the
    writes it depends on (in their transactions): counted from the organization's
    creation, so only organizations created since these were kept have them."""

    default_taxes: int = 0
    """Taxes applied to every customer without tax codes of its own: none, no Query."""
    stripe_tax_connections: frozenset[str] = frozenset()
    """Codes of the Stripe connections with ``automatic_tax``: none, no connection read
    to learn whether Stripe Tax computes an invoice's taxes."""


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
    net_payment_term: int = 0
    """Days to pay an invoice, for customers without a term of their own."""
    default_currency: str = "USD"
    email: str | None = None
    legal_name: str | None = None
    legal_number: str | None = None
    tax_identification_number: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    zipcode: str | None = None
    country: str | None = None
    email_settings: list[str] = Field(default_factory=list)
    """Which documents Lago e-mails. Billow e-mails nothing; the choice is kept for clients."""
    invoice_footer: str | None = None
    document_locale: str = "en"
    billing_hints: BillingHints | None = Field(default=None, exclude=True)
    """Not part of the document (``exclude``): read from the item's own attributes."""


PROFILE_FIELDS: tuple[str, ...] = (
    "net_payment_term",
    "default_currency",
    "email",
    "legal_name",
    "legal_number",
    "tax_identification_number",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zipcode",
    "country",
    "email_settings",
)
"""Settings a caller may set as given (Lago's organization update, minus nested objects)."""


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


def organization_as_lago(
    organization: Organization, webhook_urls: Sequence[str], taxes: Sequence[Tax]
) -> dict[str, object]:
    """Lago's OrganizationObject. ``webhook_urls`` are the organization's webhook endpoints,
    oldest first (``webhook_url`` is the first); ``taxes`` those applied to every customer
    without tax codes of its own."""
    return {
        "lago_id": organization.id,
        "name": organization.name,
        "created_at": organization.created_at,
        "webhook_url": webhook_urls[0] if webhook_urls else None,
        "webhook_urls": list(webhook_urls),
        "country": organization.country,
        "default_currency": organization.default_currency,
        "address_line1": organization.address_line1,
        "address_line2": organization.address_line2,
        "state": organization.state,
        "zipcode": organization.zipcode,
        "email": organization.email,
        "city": organization.city,
        "legal_name": organization.legal_name,
        "legal_number": organization.legal_number,
        "tax_identification_number": organization.tax_identification_number,
        "timezone": organization.timezone,
        "net_payment_term": organization.net_payment_term,
        "email_settings": organization.email_settings,
        "document_numbering": DOCUMENT_NUMBERING,
        "document_number_prefix": organization.document_number_prefix,
        "finalize_zero_amount_invoice": True,
        "billing_configuration": {
            "invoice_footer": organization.invoice_footer,
            "invoice_grace_period": 0,
            "document_locale": organization.document_locale,
            "payment_retry_delays_days": organization.payment_retry_delays_days,
        },
        "taxes": [tax.as_lago() for tax in taxes],
    }
