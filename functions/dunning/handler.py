"""Lambda entry point: plans the next payment retry after each ``invoice.payment_failure``."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.domain.events import OutboxEvent
from billow.services.dunning import plan_retry

logger = Logger(service="billow")


def plan(record: BusRecord[OutboxEvent], context: LambdaContext) -> None:
    event = record.body.detail
    logger.info(
        "Payment failure",
        extra={"event": event.event_id, "outcome": plan_retry(dependencies(), event)},
    )


lambda_handler = sqs_consumer(BusRecord[OutboxEvent], plan, logger=logger)
