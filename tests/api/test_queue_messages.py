"""Queue messages are typed: a consumer reads only a message its command's model accepts.

A message that does not match (a producer's bug, a hand-made replay) is dead-lettered
for someone to look at, instead of being acted on or acknowledged as if it meant
something, and the other messages of its batch are processed as usual.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from billow.composition import dependencies
from billow.domain.events import OutboxEvent, internal_event
from billow.topology import PAYMENT_REQUESTED, PROVIDER_SYNC_REQUESTED


def publish(*events: OutboxEvent) -> None:
    """Put outbox events on the billing bus, as the publisher does with recorded ones."""
    assert dependencies().bus.put(list(events)) == []


def dead_lettered(local_billow: Any, queue: str) -> list[dict[str, Any]]:
    """The outbox events (EventBridge ``detail``) in ``queue``'s DLQ."""
    return [json.loads(body)["detail"] for body in local_billow.dlq_messages(queue)]


def test_a_sync_request_for_an_unknown_action_is_dead_lettered_not_run(
    local_billow: Any, org: Any
) -> None:
    """``create``, ``link`` and ``update`` are the actions Billow asks for; anything else
    used to run as an update of the customer in Stripe."""
    unknown = internal_event(
        org.id, PROVIDER_SYNC_REQUESTED, {"external_customer_id": "acme", "action": "delete"}
    )
    known = internal_event(
        org.id, PROVIDER_SYNC_REQUESTED, {"external_customer_id": "ghost", "action": "update"}
    )
    publish(unknown, known)
    local_billow.wait_idle()

    dead = {event["event_id"] for event in dead_lettered(local_billow, "provider-sync")}
    assert unknown.event_id in dead
    assert known.event_id not in dead  # a customer that is gone: nothing to do, done


def test_a_charge_command_naming_no_invoice_id_is_dead_lettered_not_dropped(
    local_billow: Any, org: Any
) -> None:
    """An invoice id that is not a string was read as one (``"1234"``), found no invoice
    and was acknowledged as a stale attempt: the charge was lost without a trace."""
    malformed = internal_event(org.id, PAYMENT_REQUESTED, {"invoice_id": 1234, "attempt": 1})
    publish(malformed)
    local_billow.wait_idle()

    assert malformed.event_id in {
        event["event_id"] for event in dead_lettered(local_billow, "payments")
    }


def _record(detail: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS record as Lambda's poller hands it over, its body an EventBridge event."""
    body = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail["event_type"],
        "source": "billow",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1767225600000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1767225600000",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def test_a_malformed_message_fails_alone_and_the_rest_of_its_batch_is_done(
    local_billow: Any, org: Any
) -> None:
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:payments"
    stale = internal_event(org.id, PAYMENT_REQUESTED, {"invoice_id": "gone", "attempt": 1})
    malformed = {**stale.model_dump(mode="json"), "event_id": "x", "payload": {"attempt": 1}}
    not_json = _record(stale.model_dump(mode="json"), queue_arn) | {"body": "{"}
    records = [
        _record(stale.model_dump(mode="json"), queue_arn),
        _record(malformed, queue_arn),
        not_json,
        _record(stale.model_dump(mode="json") | {"event_id": "y"}, queue_arn),
    ]

    response = local_billow.invoke("payments", {"Records": records})

    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": records[1]["messageId"]},
            {"itemIdentifier": records[2]["messageId"]},
        ]
    }
