"""Lago's organization object as served."""

from __future__ import annotations

from typing import Literal

from billow.api.responses.catalog import TaxObject
from billow.api.responses.common import LagoObject, Timestamp


class OrganizationBillingConfiguration(LagoObject):
    invoice_footer: str | None
    invoice_grace_period: int
    document_locale: str
    payment_retry_delays_days: list[int]
    """Billow's dunning: days after each failed charge before the next retry."""


class OrganizationObject(LagoObject):
    lago_id: str
    name: str
    created_at: Timestamp
    webhook_url: str | None
    """The oldest webhook endpoint's URL."""
    webhook_urls: list[str]
    country: str | None
    default_currency: str
    address_line1: str | None
    address_line2: str | None
    state: str | None
    zipcode: str | None
    email: str | None
    city: str | None
    legal_name: str | None
    legal_number: str | None
    tax_identification_number: str | None
    timezone: str
    net_payment_term: int
    email_settings: list[str]
    document_numbering: Literal["per_organization"]
    document_number_prefix: str
    finalize_zero_amount_invoice: bool
    billing_configuration: OrganizationBillingConfiguration
    taxes: list[TaxObject]


class OrganizationResponse(LagoObject):
    organization: OrganizationObject
