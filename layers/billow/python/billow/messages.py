"""Reading Billow's own events back from the queues EventBridge feeds."""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from billow.domain.events import OutboxEvent


def outbox_event(sqs_body: str) -> OutboxEvent:
    """An SQS message body is the EventBridge event; its ``detail`` is our OutboxEvent."""
    envelope = EventBridgeModel.model_validate(json.loads(sqs_body))
    return OutboxEvent.model_validate(envelope.detail)
