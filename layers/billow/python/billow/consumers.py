"""SQS consumers: one builder for the Lambda handler of every queue.

Each queue's consumer is a record function and the model of its records. The builder
gives it what every consumer needs: Powertools' batch processor validating each record
against the model, partial batch responses (a failed record is retried alone and ends
in the queue's DLQ; the rest of the batch is done), the Lambda context in the logs, a
trace per invocation and per record (``billow.tracing``), and metrics flushed when the
consumer records any.

A message that does not match the model fails like a record whose function raised: it
does not stop the batch, and SQS moves it to the DLQ after its last receive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Json

from billow import tracing

BodyT = TypeVar("BodyT", bound=BaseModel)
DetailT = TypeVar("DetailT", bound=BaseModel)
RecordT = TypeVar("RecordT", bound=SqsRecordModel)

SqsHandler = Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]


class BusEvent(EventBridgeModel, Generic[DetailT]):
    """The EventBridge event a rule puts in a queue, its ``detail`` typed."""

    detail: DetailT


class BusRecord(SqsRecordModel, Generic[DetailT]):
    """An SQS record fed by an EventBridge rule: ``body.detail`` is the outbox event."""

    body: Json[BusEvent[DetailT]]


class QueueRecord(SqsRecordModel, Generic[BodyT]):
    """An SQS record whose body Billow sent itself (the billing run's fan-out)."""

    body: Json[BodyT]


def sqs_consumer(
    model: type[RecordT],
    consume: Callable[[RecordT, LambdaContext], None],
    *,
    logger: Logger,
    metrics: Metrics | None = None,
) -> SqsHandler:
    """The Lambda handler that runs ``consume`` on each record of a batch, parsed as
    ``model``, and reports the records that failed."""
    processor = BatchProcessor(event_type=EventType.SQS, model=model)

    @tracing.capture_method
    def record_handler(record: RecordT, lambda_context: LambdaContext) -> None:
        consume(record, lambda_context)

    @logger.inject_lambda_context
    @tracing.capture_lambda_handler
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return metrics.log_metrics(lambda_handler) if metrics is not None else lambda_handler
