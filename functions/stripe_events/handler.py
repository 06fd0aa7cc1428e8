"""Lambda entry point: processes stored Stripe events (SQS, partial batch failures)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.messages import Command, StripeEventReceived
from billow.services.stripe_events import process

logger = Logger(service="billow")


def apply(record: BusRecord[Command[StripeEventReceived]], context: LambdaContext) -> None:
    command = record.body.detail
    stripe_event_id = command.payload.stripe_event_id
    outcome = process(
        dependencies(), command.organization_id, stripe_event_id, command.payload.connection_code
    )
    logger.info(
        "Stripe event processed", extra={"outcome": outcome, "stripe_event_id": stripe_event_id}
    )


lambda_handler = sqs_consumer(BusRecord[Command[StripeEventReceived]], apply, logger=logger)
