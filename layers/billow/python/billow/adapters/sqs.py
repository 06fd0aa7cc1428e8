"""Backoff for messages a consumer could not handle yet."""

from __future__ import annotations

import functools
from typing import Any

import boto3


class Queues:
    def __init__(self) -> None:
        self._urls: dict[str, str] = {}

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
