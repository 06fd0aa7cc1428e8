"""Creating organizations (tenants) and resolving API keys to them."""

from __future__ import annotations

from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound
from billow.domain.organizations import (
    Organization,
    document_prefix,
    generate_api_key,
    generate_hmac_key,
    hash_api_key,
)


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
    deps.store.create_organization(organization, hash_api_key(key))
    return NewOrganization(
        id=organization.id, name=organization.name, api_key=key, hmac_key=organization.hmac_key
    )


def organization_for_api_key(deps: Dependencies, api_key: str) -> str | None:
    return deps.store.organization_for_api_key(hash_api_key(api_key))


class OrganizationBillingInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payment_retry_delays_days: list[int] | None = Field(default=None, max_length=10)
    """Billow's dunning schedule: days after each failed charge; ``[]`` turns retries off."""

    @field_validator("payment_retry_delays_days")
    @classmethod
    def _positive(cls, delays: list[int] | None) -> list[int] | None:
        if delays is not None and any(not 1 <= delay <= 90 for delay in delays):
            raise ValueError("each delay is a whole number of days from 1 to 90")
        return delays


class OrganizationInput(BaseModel):
    """The parts of Lago's organization update Billow uses; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    timezone: str | None = None
    document_number_prefix: str | None = Field(default=None, min_length=1, max_length=10)
    billing_configuration: OrganizationBillingInput | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is not None and zone not in available_timezones():
            raise ValueError("unknown IANA timezone")
        return zone


def update_organization(
    deps: Dependencies, organization_id: str, request: OrganizationInput
) -> Organization:
    organization = deps.store.get_organization(organization_id)
    if organization is None:
        raise NotFound("organization")
    changes: dict[str, object] = {}
    if request.timezone:
        changes["timezone"] = request.timezone
    if request.document_number_prefix:
        changes["document_number_prefix"] = request.document_number_prefix.upper()
    billing = request.billing_configuration
    if billing is not None and billing.payment_retry_delays_days is not None:
        changes["payment_retry_delays_days"] = billing.payment_retry_delays_days
    updated = organization.model_copy(update=changes)
    deps.store.save_organization(updated)
    return updated
