"""The identifiers clients choose: customers' and subscriptions' ``external_id`` and the
``code`` of taxes, plans, add-ons and coupons.

Each one is later a segment of a URL path (``GET /customers/{external_id}``) and part of a
DynamoDB key, so Billow accepts only identifiers it can be reached by again. What a
client percent-encodes (``urllib.parse.quote(id, safe="")``) reaches Billow intact unless
it holds one of the characters below; those are refused when the object is created, with
``invalid_characters``, instead of making an object nobody can read, change or delete.

- ``/``: API Gateway HTTP APIs decode the path before routing, so ``a%2Fb`` arrives as two
  segments, ``a/b``, and names nothing.
- ``?``: a decoded ``%3F`` ends the path there; ``/customers/a%3Fb`` reaches customer ``a``.
- ``%``: HTTP APIs decode the path a second time, so ``a%2541`` arrives as ``aA`` and
  ``a%25zz`` is refused by the gateway itself.
- ``#`` and ``\\``: a fragment and a path separator to browsers and many HTTP clients,
  which cut or rewrite them before any request is sent.
- control characters (C0, DEL, C1) and NUL: invalid in URLs, and invisible in every
  dashboard and log that shows the id.

``.`` and ``..`` are refused too (``value_is_invalid``): clients remove such dot segments
from a path (RFC 3986, section 5.2.4), so ``/customers/..`` is never sent as written.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_IDENTIFIER_BYTES = 512
"""Identifiers are part of DynamoDB sort keys, which hold at most 1 KB."""

_UNREACHABLE = frozenset("/?#\\%")
_DOT_SEGMENTS = frozenset({".", ".."})


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("value_is_mandatory")
    return value


def _fits_a_key(value: str) -> str:
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError("value_is_too_long")
    return value


def _reachable(value: str) -> str:
    """``value`` if, percent-encoded as a path segment, it reaches Billow unchanged."""
    if value in _DOT_SEGMENTS:
        raise ValueError("value_is_invalid")
    if any(
        character in _UNREACHABLE or unicodedata.category(character) == "Cc" for character in value
    ):
        raise ValueError("invalid_characters")
    return value


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=255),
    AfterValidator(not_blank),
    AfterValidator(_fits_a_key),
    AfterValidator(_reachable),
]
"""The one type of every external id and code a client creates an object with. Ids that
only name an existing object (``external_customer_id`` on a subscription, say) are plain
strings: an unreachable one simply names nothing (404)."""

IdentifierList = Annotated[list[Identifier], Field(max_length=100)]
"""Codes naming several objects at once (``tax_codes``, ``plan_codes``)."""
