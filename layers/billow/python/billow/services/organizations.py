"""Creating organizations (tenants) and Lago's organization settings (PUT /organizations);
resolving API keys to organizations is ``billow.services.api_keys``."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, field_validator

from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import ConcurrentUpdate, NotFound, ValidationFailed
from billow.domain.money import Currency
from billow.domain.organizations import (
    PROFILE_FIELDS,
    Organization,
    document_prefix,
    generate_api_key,
    generate_hmac_key,
    hash_api_key,
    organization_as_lago,
)
from billow.domain.profiles import Country, is_email_list
from billow.services.webhook_endpoints import point_first_endpoint_at


class NewOrganization(BaseModel):
    """Returned once, at creation: the only time the API key is ever shown."""

    id: str
    name: str
    api_key: str
    hmac_key: str


def create_organization(
    deps: Dependencies, name: str, api_key: str | None = None
) -> NewOrganization:
    organization_id = new_id()
    key = api_key or generate_api_key()
    organization = Organization(
        id=organization_id,
        name=name,
        hmac_key=generate_hmac_key(),
        created_at=iso(utcnow()),
        document_number_prefix=document_prefix(name, organization_id),
    )
    try:
        deps.store.organizations.create(organization, hash_api_key(key))
    except ConcurrentUpdate as taken:  # the id is new: only the API key can already exist
        raise ValidationFailed({"api_key": ["value_already_exist"]}) from taken
    return NewOrganization(
        id=organization.id, name=organization.name, api_key=key, hmac_key=organization.hmac_key
    )


class OrganizationBillingInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payment_retry_delays_days: list[int] | None = Field(default=None, max_length=10)
    """Billow's dunning schedule: days after each failed charge; ``[]`` turns retries off."""
    invoice_footer: str | None = Field(default=None, max_length=600)
    document_locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    invoice_grace_period: int | None = Field(default=None, ge=0, le=365)
    """Billow finalizes invoices at once: only 0 is accepted."""

    @field_validator("payment_retry_delays_days")
    @classmethod
    def _positive(cls, delays: list[int] | None) -> list[int] | None:
        if delays is not None and any(not 1 <= delay <= 90 for delay in delays):
            raise ValueError("each delay is a whole number of days from 1 to 90")
        return delays


def _email(value: str | None) -> str | None:
    if value is not None and not is_email_list(value):
        raise ValueError("invalid_email_format")
    return value


EMAIL_SETTINGS = frozenset({"invoice.finalized", "credit_note.created", "payment_receipt.created"})


def _email_settings(settings: list[str] | None) -> list[str] | None:
    if settings is not None and not set(settings) <= EMAIL_SETTINGS:
        raise ValueError("unsupported_value")
    return settings


class OrganizationInput(BaseModel):
    """Lago's organization update (OrganizationUpdateInput). Settings Billow cannot honour
    (per-customer numbering, leaving zero invoices unfinalized, a grace period) are refused
    rather than kept and ignored."""

    model_config = ConfigDict(extra="ignore")

    timezone: str | None = None
    document_number_prefix: str | None = Field(default=None, min_length=1, max_length=10)
    document_numbering: Literal["per_customer", "per_organization"] | None = None
    finalize_zero_amount_invoice: bool | None = None
    webhook_url: Annotated[HttpUrl, Field(max_length=2048)] | None = None
    """The URL of the organization's first webhook endpoint (created if there is none)."""
    net_payment_term: int | None = Field(default=None, ge=0, le=365)
    default_currency: Currency | None = None
    email: Annotated[str | None, AfterValidator(_email)] = None
    legal_name: str | None = Field(default=None, max_length=255)
    legal_number: str | None = Field(default=None, max_length=255)
    tax_identification_number: str | None = Field(default=None, max_length=255)
    address_line1: str | None = Field(default=None, max_length=255)
    address_line2: str | None = Field(default=None, max_length=255)
    city: str | None = Field(default=None, max_length=255)
    state: str | None = Field(default=None, max_length=255)
    zipcode: str | None = Field(default=None, max_length=255)
    country: Country | None = None
    email_settings: Annotated[list[str] | None, AfterValidator(_email_settings)] = None
    billing_configuration: OrganizationBillingInput | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None and zone not in available_timezones():
            raise ValueError("invalid_timezone")
        return zone

    def unsupported(self) -> dict[str, object]:
        """Per field, the settings asked for that Billow does not implement."""
        refused: dict[str, object] = {}
        if self.document_numbering == "per_customer":
            refused["document_numbering"] = ["not_supported"]
        if self.finalize_zero_amount_invoice is False:
            refused["finalize_zero_amount_invoice"] = ["not_supported"]
        if self.billing_configuration and self.billing_configuration.invoice_grace_period:
            refused["invoice_grace_period"] = ["not_supported"]
        if "webhook_url" in self.model_fields_set and self.webhook_url is None:
            refused["webhook_url"] = ["value_is_mandatory"]
        return refused


NULLABLE_FIELDS = frozenset(
    name
    for name, field in Organization.model_fields.items()
    if name in PROFILE_FIELDS and not field.is_required() and field.default is None
)
"""Profile fields a ``null`` clears; the others (currency, term, e-mail settings) keep
their value."""


def _changes(request: OrganizationInput) -> dict[str, object]:
    """What the request sets: Lago's fields as given (``null`` clears the optional ones),
    Billow's own only when given a value."""
    given = request.model_fields_set
    changes: dict[str, object] = {
        name: getattr(request, name)
        for name in PROFILE_FIELDS
        if name in given and (getattr(request, name) is not None or name in NULLABLE_FIELDS)
    }
    if request.timezone:
        changes["timezone"] = request.timezone
    if request.document_number_prefix:
        changes["document_number_prefix"] = request.document_number_prefix.upper()
    billing = request.billing_configuration
    if billing is not None:
        if billing.payment_retry_delays_days is not None:
            changes["payment_retry_delays_days"] = billing.payment_retry_delays_days
        if "invoice_footer" in billing.model_fields_set:
            changes["invoice_footer"] = billing.invoice_footer
        if billing.document_locale:
            changes["document_locale"] = billing.document_locale
    return changes


def update_organization(
    deps: Dependencies, organization_id: str, request: OrganizationInput
) -> Organization:
    """Lago's organization update. ``webhook_url`` moves the first webhook endpoint (or
    creates it) first, so a URL it refuses leaves the organization as it was."""
    organization = deps.store.organizations.get(organization_id)
    if organization is None:
        raise NotFound("organization")
    refused = request.unsupported()
    if refused:
        raise ValidationFailed(refused)
    if request.webhook_url is not None:
        point_first_endpoint_at(deps, organization_id, request.webhook_url)
    updated = organization.model_copy(update=_changes(request))
    deps.store.organizations.save(updated)
    return updated


def present(deps: Dependencies, organization: Organization) -> dict[str, object]:
    """The organization as Lago shows it, with its webhook URLs and default taxes."""
    endpoints = deps.store.webhook_endpoints.list_all(organization.id)
    return organization_as_lago(
        organization,
        [endpoint.webhook_url for endpoint in endpoints],
        deps.store.taxes.list_organization_defaults(organization.id),
    )
