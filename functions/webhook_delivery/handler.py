"""Lambda entry point: delivers Lago webhooks (SQS, partial batch failures, backoff)."""

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
from billow.adapters import http_sender
from billow.composition import dependencies
from billow.domain.webhooks import retry_delay_s
from billow.messages import outbox_event
from billow.services.webhook_delivery import deliver

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="webhook_delivery")
processor = BatchProcessor(event_type=EventType.SQS)


class DeliveryFailed(Exception):
    pass


@tracing.capture_method
def record_handler(record: SQSRecord) -> None:
    event = outbox_event(record.body)
    failed = deliver(dependencies(), event, http_sender.post)
    metrics.add_metric(name="WebhookEventsHandled", unit=MetricUnit.Count, value=1)
    if failed:
        metrics.add_metric(name="WebhookDeliveryFailed", unit=MetricUnit.Count, value=len(failed))
        attempt = int(record.attributes.approximate_receive_count)
        delay = retry_delay_s(attempt, dependencies().settings.webhook_retry_base_s)
        dependencies().queues.retry_after(record.event_source_arn, record.receipt_handle, delay)
        raise DeliveryFailed(f"{event.event_type} {event.event_id}: endpoints {failed} failed")


@logger.inject_lambda_context
@tracing.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
