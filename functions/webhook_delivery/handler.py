"""Lambda entry point: delivers Lago webhooks (SQS, partial batch failures, backoff)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.adapters import http_sender
from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.domain.events import OutboxEvent
from billow.domain.webhooks import retry_delay_s
from billow.services.webhook_delivery import deliver

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="webhook_delivery")


class DeliveryFailed(Exception):
    pass


def deliver_webhook(record: BusRecord[OutboxEvent], context: LambdaContext) -> None:
    event = record.body.detail
    failed = deliver(dependencies(), event, http_sender.post)
    metrics.add_metric(name="WebhookEventsHandled", unit=MetricUnit.Count, value=1)
    if failed:
        metrics.add_metric(name="WebhookDeliveryFailed", unit=MetricUnit.Count, value=len(failed))
        attempt = int(record.attributes.ApproximateReceiveCount)
        delay = retry_delay_s(attempt, dependencies().settings.webhook_retry_base_s)
        dependencies().queues.retry_after(record.eventSourceARN, record.receiptHandle, delay)
        raise DeliveryFailed(f"{event.event_type} {event.event_id}: endpoints {failed} failed")


lambda_handler = sqs_consumer(
    BusRecord[OutboxEvent], deliver_webhook, logger=logger, metrics=metrics
)
