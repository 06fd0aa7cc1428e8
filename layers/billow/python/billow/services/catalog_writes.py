"""Steps every catalog write shares (taxes, plans, add-ons, coupons): strictly typed
inputs, partial updates, and a code claimed by a create or a rename."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.errors import ConcurrentUpdate, ValidationFailed


class CatalogInput(BaseModel):
    """Lago's request objects: strictly typed, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


def code_taken() -> ValidationFailed:
    return ValidationFailed({"code": ["value_already_exist"]})


def commit_claiming_code(
    deps: Dependencies, transaction: Transaction, claimed: Callable[[], bool] | None
) -> None:
    """Commit a write that may claim a code: losing that race is Lago's 422, not a 503.
    ``claimed`` tells whether the code is now held (``None`` when no code is claimed)."""
    try:
        deps.store.commit(transaction)
    except ConcurrentUpdate:
        if claimed is not None and claimed():
            raise code_taken() from None
        raise


def updates_from(given: BaseModel, nullable: frozenset[str]) -> dict[str, object]:
    """What a partial update sets: fields sent, where null only clears nullable ones."""
    return {
        name: getattr(given, name)
        for name in given.model_fields_set
        if getattr(given, name) is not None or name in nullable
    }
