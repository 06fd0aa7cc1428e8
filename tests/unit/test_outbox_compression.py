"""Outbox items are compressed with a preset dictionary; items written without it (before
it, or by a deployment still running the old code) decode all the same."""

from __future__ import annotations

import json
import zlib

from billow.adapters.table import EVENTS_DICTIONARY, packed_events, unpacked
from billow.domain.events import webhook_event


def test_events_compressed_with_or_without_the_dictionary_decode_alike() -> None:
    event = webhook_event(
        "org-1",
        "customer.created",
        "customer",
        {"lago_id": "c-1", "external_id": "acme", "currency": "EUR", "email": None},
    )
    packed = packed_events([event])
    text = "[" + event.model_dump_json() + "]"
    assert zlib.decompressobj(zdict=EVENTS_DICTIONARY).decompress(packed) == text.encode()
    assert len(packed) < len(zlib.compress(text.encode(), 6))
    assert unpacked(packed) == unpacked(zlib.compress(text.encode(), 6)) == json.loads(text)
