"""Finding what a caller names, within its organization, or answering 404."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.customers import Customer
from billow.domain.errors import NotFound


def get_customer(deps: Dependencies, organization_id: str, external_id: str) -> Customer:
    customer = deps.store.get_customer(organization_id, external_id)
    if customer is None:
        raise NotFound("customer")
    return customer
