"""The outbox publisher: stream records of outbox items → events on the billing bus.

An outbox item holds the events of one transaction (``Transaction.publish``); each is
put on the bus as an event of its own.

Records are put ten to a call rather than one by one (PutEvents accepts ten entries);
a rejected entry is reported as a batch item failure, so Lambda retries from it. A
retry may put an event twice: every consumer is idempotent on the event id.
"""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent

from billow.adapters.table import unpacked
from billow.composition import Dependencies
from billow.domain.events import OutboxEvent


def publish_stream_batch(deps: Dependencies, event: dict[str, Any]) -> dict[str, Any]:
    """Publish every outbox record of the batch; failures are named by sequence number.

    Records are kept as a list, never keyed by sequence number: a record must not be
    lost because another one carries the same number (moto's stream can repeat them).
    """
    published: list[tuple[str, OutboxEvent]] = []
    for record in DynamoDBStreamEvent(event).records:
        change = record.dynamodb
        image = change.new_image if change else None
        if change and image and image.get("kind") == "outbox":
            # A binary attribute reaches a stream consumer base64-encoded, as JSON carries it.
            for staged in unpacked(base64.b64decode(image["events"])):
                published.append((str(change.sequence_number), OutboxEvent.model_validate(staged)))
    rejected = {outbox.event_id for outbox in deps.bus.put([outbox for _, outbox in published])}
    return {
        "batchItemFailures": [
            {"itemIdentifier": sequence}
            for sequence in dict.fromkeys(
                sequence for sequence, outbox in published if outbox.event_id in rejected
            )
        ]
    }
