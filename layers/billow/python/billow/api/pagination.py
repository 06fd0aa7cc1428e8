"""Lago's page/per_page pagination and its ``meta`` block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from aws_lambda_powertools.event_handler.openapi.params import Query

T = TypeVar("T")

Page = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=100)]
DEFAULT_PER_PAGE = 20


def paginate(
    items: Sequence[T], page: int, per_page: int
) -> tuple[Sequence[T], dict[str, int | None]]:
    total = len(items)
    total_pages = max((total + per_page - 1) // per_page, 1) if total else 0
    start = (page - 1) * per_page
    meta: dict[str, int | None] = {
        "current_page": page,
        "next_page": page + 1 if page < total_pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": total_pages,
        "total_count": total,
    }
    return items[start : start + per_page], meta
