"""Taxes (Lago's /taxes): rates that customers, plans and add-ons name by code."""

from __future__ import annotations

from collections.abc import Sequence

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import Name, Percentage, Tax, TaxCounts, Text
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound
from billow.domain.identifiers import Identifier
from billow.services.catalog_writes import (
    CatalogInput,
    code_taken,
    commit_claiming_code,
    updates_from,
)


class TaxInput(CatalogInput):
    """Lago's TaxUpdateInput.tax: every field optional."""

    name: Name | None = None
    code: Identifier | None = None
    rate: Percentage | None = None
    description: Text | None = None
    applied_to_organization: bool | None = None


class TaxCreateInput(TaxInput):
    """Lago's TaxCreateInput.tax."""

    name: Name
    code: Identifier
    rate: Percentage


def get_tax(deps: Dependencies, organization_id: str, code: str) -> Tax:
    tax = deps.store.taxes.get(organization_id, code)
    if tax is None:
        raise NotFound("tax")
    return tax


def list_page(
    deps: Dependencies, organization_id: str, page: int, per_page: int
) -> tuple[list[Tax], int]:
    """Page ``page`` of the taxes, newest first, and how many there are."""
    return deps.store.taxes.list_page(organization_id, (page - 1) * per_page, per_page)


def present(
    deps: Dependencies, organization_id: str, taxes: Sequence[Tax]
) -> list[dict[str, object]]:
    users = deps.store.taxes.count_users(organization_id, [tax.code for tax in taxes])
    return [tax.as_lago(TaxCounts.model_validate(users[tax.code])) for tax in taxes]


def create_tax(deps: Dependencies, organization_id: str, given: TaxCreateInput) -> Tax:
    if deps.store.taxes.get(organization_id, given.code) is not None:
        raise code_taken()
    tax = Tax(
        lago_id=new_id(),
        organization_id=organization_id,
        code=given.code,
        name=given.name,
        rate=given.rate,
        description=given.description,
        applied_to_organization=bool(given.applied_to_organization),
        created_at=iso(utcnow()),
    )
    transaction = Transaction()
    deps.store.taxes.stage(transaction, tax, None)
    commit_claiming_code(deps, transaction, lambda: True)
    return tax


def update_tax(deps: Dependencies, organization_id: str, code: str, given: TaxInput) -> Tax:
    before = get_tax(deps, organization_id, code)
    after = before.model_copy(
        update={**updates_from(given, frozenset({"description"})), "version": before.version + 1}
    )
    renamed = after.code != before.code
    if renamed:
        if deps.store.taxes.get(organization_id, after.code) is not None:
            raise code_taken()
        _retarget(deps, organization_id, before.code, after.code)
    transaction = Transaction()
    deps.store.taxes.stage(transaction, after, before)
    commit_claiming_code(
        deps,
        transaction,
        (lambda: deps.store.taxes.get(organization_id, after.code) is not None)
        if renamed
        else None,
    )
    return after


def delete_tax(deps: Dependencies, organization_id: str, code: str) -> Tax:
    """As in Lago, customers, plans and add-ons stop carrying the tax."""
    tax = get_tax(deps, organization_id, code)
    _retarget(deps, organization_id, tax.code, None)
    transaction = Transaction()
    deps.store.taxes.stage_delete(transaction, tax)
    deps.store.commit(transaction)
    return tax


def _swap(codes: list[str], old: str, new: str | None) -> list[str]:
    swapped = [new if code == old else code for code in codes]
    return list(dict.fromkeys(code for code in swapped if code is not None))


def _retarget(deps: Dependencies, organization_id: str, old: str, new: str | None) -> None:
    """Make every holder of tax ``old`` name ``new`` instead (``None``: drop it).

    Runs before the tax itself is renamed or deleted, one holder at a time, so a failure
    part-way leaves the tax in place and the same request can simply be sent again.

    Customers are the holders that grow with the organization: they are read only when the
    tax's customer counter says some carry it, so changing a tax no customer carries costs
    the same with ten customers or a million. Plans (deleted ones too, which no counter
    counts) and add-ons are the catalog, and are read whole."""
    carried_by = deps.store.taxes.count_users(organization_id, [old], consistent=True)[old]
    if carried_by["customers_count"]:
        for customer in deps.store.customers.list_all(organization_id):
            if old in customer.tax_codes:
                transaction = Transaction()
                changed = customer.model_copy(
                    update={
                        "tax_codes": _swap(customer.tax_codes, old, new),
                        "version": customer.version + 1,
                    }
                )
                deps.store.customers.stage(transaction, changed, customer)
                deps.store.commit(transaction)
    for plan in deps.store.plans.list_with_deleted(organization_id):
        if old in plan.tax_codes:
            transaction = Transaction()
            deps.store.plans.stage(
                transaction,
                plan.model_copy(
                    update={
                        "tax_codes": _swap(plan.tax_codes, old, new),
                        "version": plan.version + 1,
                    }
                ),
                plan,
            )
            deps.store.commit(transaction)
    for add_on in deps.store.add_ons.list_all(organization_id):
        if old in add_on.tax_codes:
            transaction = Transaction()
            deps.store.add_ons.stage(
                transaction,
                add_on.model_copy(
                    update={
                        "tax_codes": _swap(add_on.tax_codes, old, new),
                        "version": add_on.version + 1,
                    }
                ),
                add_on,
            )
            deps.store.commit(transaction)
