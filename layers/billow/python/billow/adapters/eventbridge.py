"""Putting outbox events on the billing bus."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import boto3

from billow.domain.events import OutboxEvent
from billow.topology import EVENT_SOURCE

MAX_ENTRIES_PER_CALL = 10


class EventBus:
    def __init__(self, bus_name: str) -> None:
        self.bus_name = bus_name

    @functools.cached_property
    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client("events")

    def put(self, events: Sequence[OutboxEvent]) -> list[OutboxEvent]:
        """Put events in batches of ten; returns the ones EventBridge did not accept."""
        rejected: list[OutboxEvent] = []
        for start in range(0, len(events), MAX_ENTRIES_PER_CALL):
            chunk = events[start : start + MAX_ENTRIES_PER_CALL]
            result = self.client.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": event.event_type,
                        "Detail": event.model_dump_json(),
                        "EventBusName": self.bus_name,
                    }
                    for event in chunk
                ]
            )
            rejected += [
                event
                for event, entry in zip(chunk, result["Entries"], strict=True)
                if entry.get("ErrorCode")
            ]
        return rejected
