"""Lambda entry point: bills each due subscription queued by the billing run."""

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
from billow.services.billing_run import DueSubscription, work

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="billow")
processor = BatchProcessor(event_type=EventType.SQS)


@tracing.capture_method
def record_handler(record: SQSRecord) -> None:
    due = DueSubscription.model_validate_json(record.body)
    outcomes = work(dependencies(), due)
    metrics.add_metric(name="BillingMoments", unit=MetricUnit.Count, value=len(outcomes))
    logger.info("Subscription billed", extra={"subscription": due.lago_id, "outcomes": outcomes})


@logger.inject_lambda_context
@tracing.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
