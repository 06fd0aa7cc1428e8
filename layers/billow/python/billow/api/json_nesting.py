"""How deeply a JSON body nests, measured before anything parses it.

Python's ``json`` and pydantic recurse once per level: a body of a thousand ``[`` is a
``RecursionError`` (a 500) before any validation runs. No request Billow understands, nor
any event Stripe sends, nests anywhere near :data:`MAX_JSON_DEPTH`, so deeper bodies are
refused from the raw bytes, in linear time.
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 32

_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
"""A JSON string, or an unterminated one running to the end of the body. The quantifiers
are possessive and every string ends somewhere, so no input makes this backtrack."""
_OPENING = frozenset(b"[{")
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


def nests_deeper_than(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` opens more than ``limit`` arrays and objects inside one another.

    Brackets inside strings do not count. Malformed JSON is measured all the same (its
    parser reports it later, as invalid JSON)."""
    depth = 0
    for bracket in _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in _OPENING else -1
        if depth > limit:
            return True
    return False
