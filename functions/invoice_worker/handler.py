"""Lambda entry point: bills each due subscription queued by the billing run."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import QueueRecord, sqs_consumer
from billow.services.billing_run import DueSubscription
from billow.services.invoice_work import work

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="billow")


def bill(record: QueueRecord[DueSubscription], context: LambdaContext) -> None:
    due = record.body
    outcomes = work(dependencies(), due)
    metrics.add_metric(name="BillingMoments", unit=MetricUnit.Count, value=len(outcomes))
    logger.info("Subscription billed", extra={"subscription": due.lago_id, "outcomes": outcomes})


lambda_handler = sqs_consumer(QueueRecord[DueSubscription], bill, logger=logger, metrics=metrics)
