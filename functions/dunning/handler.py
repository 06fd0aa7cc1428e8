"""Lambda entry point: plans the next payment retry after each ``invoice.payment_failure``."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow import tracing
from billow.composition import dependencies
from billow.messages import outbox_event
from billow.services.dunning import plan_retry

logger = Logger(service="billow")
processor = BatchProcessor(event_type=EventType.SQS)


@tracing.capture_method
def record_handler(record: SQSRecord) -> None:
    event = outbox_event(record.body)
    logger.info(
        "Payment failure",
        extra={"event": event.event_id, "outcome": plan_retry(dependencies(), event)},
    )


@logger.inject_lambda_context
@tracing.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
