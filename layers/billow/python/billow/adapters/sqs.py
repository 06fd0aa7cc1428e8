"""SQS: fan-out of scheduled work, and backoff for messages a consumer could not handle yet."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

import boto3

SEND_BATCH_LIMIT = 10


class Queues:
    def __init__(self, named_urls: dict[str, str] | None = None) -> None:
        self._urls: dict[str, str] = {}
        self._named_urls = named_urls or {}

    @functools.cached_property
    def client(self) -> Any:
        return boto3.client("sqs")

    def _url(self, queue_arn: str) -> str:
        if queue_arn not in self._urls:
            _, _, _, _, account, name = queue_arn.split(":", 5)
            found = self.client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._urls[queue_arn] = str(found["QueueUrl"])
        return self._urls[queue_arn]

    def retry_after(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Hide a failed message for ``seconds``; SQS redrives it to the DLQ after the last try."""
        self.client.change_message_visibility(
            QueueUrl=self._url(queue_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def send_all(self, queue_name: str, bodies: Iterable[dict[str, Any]]) -> int:
        """Send every body, ten per request; raises if SQS refused any of them."""
        url = self._named_urls[queue_name]
        batch: list[dict[str, Any]] = []
        sent = 0
        for body in bodies:
            batch.append({"Id": str(len(batch)), "MessageBody": json.dumps(body)})
            if len(batch) == SEND_BATCH_LIMIT:
                sent += self._send_batch(url, batch)
                batch = []
        if batch:
            sent += self._send_batch(url, batch)
        return sent

    def _send_batch(self, url: str, entries: list[dict[str, Any]]) -> int:
        result = self.client.send_message_batch(QueueUrl=url, Entries=entries)
        if result.get("Failed"):
            raise RuntimeError(f"SQS refused {len(result['Failed'])} messages: {result['Failed']}")
        return len(entries)
