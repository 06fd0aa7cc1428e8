"""Add-ons (Lago's /add_ons): one-off items an invoice can charge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import AddOn, Name, Text
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound
from billow.domain.identifiers import Identifier, IdentifierList
from billow.domain.money import ChargeableCents, Currency
from billow.services.catalog_writes import (
    CatalogInput,
    code_taken,
    commit_claiming_code,
    updates_from,
)
from billow.services.lookups import require_taxes
from billow.services.stripe_sync_requests import stage_sync, sync_views


class AddOnInput(CatalogInput):
    """Lago's AddOnUpdateInput.add_on."""

    name: Name | None = None
    invoice_display_name: Annotated[str, Field(max_length=255)] | None = None
    code: Identifier | None = None
    amount_cents: ChargeableCents | None = None
    amount_currency: Currency | None = None
    description: Text | None = None
    tax_codes: IdentifierList | None = None


class AddOnCreateInput(AddOnInput):
    """Lago's AddOnCreateInput.add_on."""

    name: Name
    code: Identifier
    amount_cents: ChargeableCents
    amount_currency: Currency


NULLABLE = frozenset({"invoice_display_name", "description"})


def get_add_on(deps: Dependencies, organization_id: str, code: str) -> AddOn:
    add_on = deps.store.add_ons.get(organization_id, code)
    if add_on is None:
        raise NotFound("add_on")
    return add_on


def list_page(
    deps: Dependencies, organization_id: str, page: int, per_page: int
) -> tuple[list[AddOn], int]:
    """Page ``page`` of the add-ons, newest first, and how many there are."""
    return deps.store.add_ons.list_page(organization_id, (page - 1) * per_page, per_page)


def present(
    deps: Dependencies, organization_id: str, add_ons: Sequence[AddOn]
) -> list[dict[str, object]]:
    taxes = {tax.code: tax for tax in deps.store.taxes.list_all(organization_id)}
    mirrored = sync_views(deps, organization_id, "add_on", [add_on.lago_id for add_on in add_ons])
    return [
        {
            **add_on.as_lago([taxes[code] for code in add_on.tax_codes if code in taxes]),
            "stripe_sync": mirrored[add_on.lago_id],
        }
        for add_on in add_ons
    ]


def create_add_on(deps: Dependencies, organization_id: str, given: AddOnCreateInput) -> AddOn:
    taxes = require_taxes(deps, organization_id, given.tax_codes)
    if deps.store.add_ons.get(organization_id, given.code) is not None:
        raise code_taken()
    add_on = AddOn(
        lago_id=new_id(),
        organization_id=organization_id,
        code=given.code,
        name=given.name,
        invoice_display_name=given.invoice_display_name,
        description=given.description,
        amount_cents=given.amount_cents,
        amount_currency=given.amount_currency,
        tax_codes=[tax.code for tax in taxes],
        created_at=iso(utcnow()),
    )
    transaction = Transaction()
    deps.store.add_ons.stage(transaction, add_on, None)
    stage_sync(
        deps, transaction, organization_id, "add_on", add_on.lago_id, add_on.code, add_on.version
    )
    commit_claiming_code(deps, transaction, lambda: True)
    return add_on


def update_add_on(deps: Dependencies, organization_id: str, code: str, given: AddOnInput) -> AddOn:
    before = get_add_on(deps, organization_id, code)
    updates = updates_from(given, NULLABLE)
    if "tax_codes" in updates:
        updates["tax_codes"] = [
            tax.code for tax in require_taxes(deps, organization_id, given.tax_codes)
        ]
    after = before.model_copy(update={**updates, "version": before.version + 1})
    renamed = after.code != before.code
    if renamed and deps.store.add_ons.get(organization_id, after.code) is not None:
        raise code_taken()
    transaction = Transaction()
    deps.store.add_ons.stage(transaction, after, before)
    stage_sync(
        deps, transaction, organization_id, "add_on", after.lago_id, after.code, after.version
    )
    commit_claiming_code(
        deps,
        transaction,
        (lambda: deps.store.add_ons.get(organization_id, after.code) is not None)
        if renamed
        else None,
    )
    return after


def delete_add_on(deps: Dependencies, organization_id: str, code: str) -> AddOn:
    """Invoices keep their own copy of an add-on fee, so nothing else refers to it."""
    add_on = get_add_on(deps, organization_id, code)
    transaction = Transaction()
    deps.store.add_ons.stage_delete(transaction, add_on)
    stage_sync(
        deps,
        transaction,
        organization_id,
        "add_on",
        add_on.lago_id,
        add_on.code,
        add_on.version + 1,
    )
    deps.store.commit(transaction)
    return add_on
