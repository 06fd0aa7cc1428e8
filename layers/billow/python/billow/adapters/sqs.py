"""Backoff for messages a consumer could not handle yet."""

from __future__ import annotations

import functools

import boto3


@functools.cache
def _client():  # type: ignore[no-untyped-def]
    return boto3.client("sqs")


@functools.cache
def _queue_url(queue_arn: str) -> str:
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return str(_client().get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def retry_after(queue_arn: str, receipt_handle: str, seconds: int) -> None:
    """Hide a failed message for ``seconds``; SQS redrives it to the DLQ after the last try."""
    _client().change_message_visibility(
        QueueUrl=_queue_url(queue_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
    )
