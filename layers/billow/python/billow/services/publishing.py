"""The outbox publisher: stream records of outbox items → events on the billing bus.

Records are put ten to a call rather than one by one (PutEvents accepts ten entries);
a rejected entry is reported as a batch item failure, so Lambda retries from it. A
retry may put an event twice: every consumer is idempotent on the event id.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

from billow.adapters.eventbridge import EventBus
from billow.domain.events import OutboxEvent
from billow.settings import Settings


@functools.cache
def _bus() -> EventBus:
    return EventBus(Settings.from_env().event_bus_name)


def publish_stream_batch(event: dict[str, Any]) -> dict[str, Any]:
    pending: dict[str, OutboxEvent] = {}
    for record in DynamoDBStreamEvent(event).records:
        image = record.dynamodb.new_image if record.dynamodb else None
        if image and image.get("kind") == "outbox" and record.dynamodb:
            pending[str(record.dynamodb.sequence_number)] = OutboxEvent.model_validate_json(
                image["event"]
            )
    sequence_of = {outbox.event_id: sequence for sequence, outbox in pending.items()}
    rejected = _bus().put(list(pending.values()))
    return {"batchItemFailures": [{"itemIdentifier": sequence_of[e.event_id]} for e in rejected]}
