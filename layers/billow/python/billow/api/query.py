"""Query parameters of list routes, read the way Lago reads them.

Lago ignores a filter or page value it cannot use (``per_page=null``, ``status=bogus``,
``issuing_date_from=soon``) and answers with its defaults instead of an error, so clients
built against it send such values without harm. Each type here validates to the usable
value or to the default, and still documents the expected type in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, TypeAdapter, ValidationError

_BOOLEAN = TypeAdapter(bool)


def whole_number_or(default: int, *, highest: int) -> Callable[[Any], Any]:
    """A positive whole number, capped at ``highest``; anything else becomes ``default``."""

    def read(value: Any) -> Any:
        try:
            number = int(str(value).strip())
        except ValueError:
            return default
        return min(number, highest) if number >= 1 else default

    return read


def _boolean_or_none(value: Any) -> Any:
    try:
        return _BOOLEAN.validate_python(value)
    except ValidationError:
        return None


def _date_or_none(value: Any) -> Any:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _amount_or_none(value: Any) -> Any:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def known(choices: Any, *, many: bool = False) -> Callable[[Any], Any]:
    """Keep the values among ``choices`` (a ``Literal``): one value, or with ``many`` a list
    (which may arrive as one value, or comma-joined as API Gateway joins repeated keys).

    Nothing usable left means no filter, so the route's default applies."""
    allowed = frozenset(get_args(choices))

    def keep_one(value: Any) -> Any:
        return value if value in allowed else None

    def keep_many(value: Any) -> Any:
        values = value if isinstance(value, list) else str(value).split(",")
        return [item for item in values if item in allowed] or None

    return keep_many if many else keep_one


Flag = Annotated[bool | None, BeforeValidator(_boolean_or_none)]
"""``true``/``false`` (and pydantic's other spellings); anything else is no filter."""

Day = Annotated[date | None, BeforeValidator(_date_or_none)]
"""An ISO 8601 date; anything else is no filter."""

Cents = Annotated[int | None, BeforeValidator(_amount_or_none)]
"""A whole amount in minor units; anything else is no filter."""
