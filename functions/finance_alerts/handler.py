"""Lambda entry point: tells the finance team about failed payments (SQS, partial batch
failures)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.domain.events import OutboxEvent
from billow.services.finance_alerts import alert_once

logger = Logger(service="billow")


def alert(record: BusRecord[OutboxEvent], context: LambdaContext) -> None:
    alert_once(dependencies(), record.body.detail, context)


lambda_handler = sqs_consumer(BusRecord[OutboxEvent], alert, logger=logger)
