"""Lambda entry point: charges invoices (one PaymentIntent per requested attempt)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
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
from billow.services.payments.charging import charge

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="billow")
processor = BatchProcessor(event_type=EventType.SQS)


@tracing.capture_method
def record_handler(record: SQSRecord) -> None:
    event = outbox_event(record.body)
    invoice_id = str(event.payload["invoice_id"])
    attempt = int(str(event.payload["attempt"]))
    outcome = charge(dependencies(), event.organization_id, invoice_id, attempt)
    metrics.add_metric(name=f"Charge_{outcome}", unit=MetricUnit.Count, value=1)
    logger.info(
        "Charge attempt", extra={"invoice": invoice_id, "attempt": attempt, "outcome": outcome}
    )


@logger.inject_lambda_context
@tracing.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
