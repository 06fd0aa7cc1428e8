"""Creating organizations (tenants) and resolving API keys to them."""

from __future__ import annotations

from pydantic import BaseModel

from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
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
