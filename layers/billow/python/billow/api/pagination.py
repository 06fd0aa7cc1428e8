"""Lago's page/per_page pagination and its ``meta`` block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BeforeValidator

from billow.api.query import whole_number_or

T = TypeVar("T")

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
"""A larger ``per_page`` is served as this many: pages cost what they show."""
MAX_PAGE = 1_000_000

Page = Annotated[
    int, BeforeValidator(whole_number_or(1, highest=MAX_PAGE)), Query(ge=1, le=MAX_PAGE)
]
"""Lago ignores a page that is not a positive number and shows the first."""
PerPage = Annotated[
    int,
    BeforeValidator(whole_number_or(DEFAULT_PER_PAGE, highest=MAX_PER_PAGE)),
    Query(ge=1, le=MAX_PER_PAGE),
]
"""Lago ignores a ``per_page`` that is not a positive number (``null`` included)."""


def page_meta(total: int, page: int, per_page: int) -> dict[str, int | None]:
    """Lago's ``meta`` for page ``page`` of ``total`` items."""
    total_pages = max((total + per_page - 1) // per_page, 1) if total else 0
    return {
        "current_page": page,
        "next_page": page + 1 if page < total_pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": total_pages,
        "total_count": total,
    }


def paginate(
    items: Sequence[T], page: int, per_page: int
) -> tuple[Sequence[T], dict[str, int | None]]:
    """A page of a list already read whole."""
    start = (page - 1) * per_page
    return items[start : start + per_page], page_meta(len(items), page, per_page)
