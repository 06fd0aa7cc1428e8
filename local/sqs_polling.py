"""Lambda's SQS event source mappings: the records a poller hands a function, and one
long-polling poller per queue that honours partial batch failures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from local.lambda_invocation import (
    Activity,
    Invoke,
    batch_item_failures,
    log_handler_failure,
    wire_json,
)
from local.resources import REGION, QueueResources

logger = logging.getLogger(__name__)

SQS_WAIT_S = 1
"""Long-poll wait: short, so a stopping poller notices within a couple of seconds."""


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = wire_json(value["BinaryValue"])
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = wire_json(list(value.get("BinaryListValues", [])))
    attribute["dataType"] = value["DataType"]
    return attribute


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ``Records[]`` entry of the event Lambda's SQS poller sends."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(eventSource="aws:sqs", eventSourceARN=queue_arn, awsRegion=REGION)
    return record


def chunks(items: Sequence[Any], size: int = 10) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QueuePoller:
    """Plays Lambda's SQS event source mapping for one queue.

    Messages not named in ``batchItemFailures`` are deleted; failed ones are left alone, so
    SQS shows them again after the visibility timeout and moto moves them to the DLQ once
    they have been received ``max_receive_count`` times. A raised exception fails the batch.
    """

    def __init__(
        self,
        resources: QueueResources,
        sqs: Any,
        invoke: Invoke,
        activity: Activity,
        stopping: threading.Event,
        after_invocation: Callable[[], None],
    ) -> None:
        self._resources = resources
        self._sqs = sqs
        self._invoke = invoke
        self._activity = activity
        self._stopping = stopping
        self._after_invocation = after_invocation
        self.thread = threading.Thread(
            target=self._run, name=f"billow-local-sqs-{resources.queue.name}", daemon=True
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._receive()
                if messages:
                    self._process(messages)
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("polling queue %s failed; retrying", self._resources.queue.name)
                self._stopping.wait(1.0)

    def _receive(self) -> list[dict[str, Any]]:
        wanted = self._resources.queue.batch_size
        messages: list[dict[str, Any]] = []
        wait = SQS_WAIT_S
        while len(messages) < wanted and not self._stopping.is_set():
            asked = min(10, wanted - len(messages))
            received = self._sqs.receive_message(
                QueueUrl=self._resources.url,
                MaxNumberOfMessages=asked,
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(received)
            if len(received) < asked:
                break
            wait = 0
        return messages

    def _process(self, messages: list[dict[str, Any]]) -> None:
        queue = self._resources.queue
        self._activity.touch()
        identifiers = [message["MessageId"] for message in messages]
        event = {"Records": [sqs_record(message, self._resources.arn) for message in messages]}
        try:
            failed = batch_item_failures(self._invoke(queue.consumer, event), identifiers)
        except Exception:
            log_handler_failure(queue.consumer, f"a batch of {len(messages)} from {queue.name}")
            failed = set(identifiers)
        finally:
            self._after_invocation()
        done = [message for message in messages if message["MessageId"] not in failed]
        for chunk in chunks(done):
            self._sqs.delete_message_batch(
                QueueUrl=self._resources.url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )
        if failed:
            logger.warning(
                "%s: %d of %d messages failed; SQS shows them again after the visibility "
                "timeout (DLQ after %d receives)",
                queue.name,
                len(failed),
                len(messages),
                queue.max_receive_count,
            )
        self._activity.touch()
