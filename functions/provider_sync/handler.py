"""Lambda entry point: keeps customers in step with Stripe (SQS, partial batch failures)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.messages import Command, ProviderSyncRequested
from billow.services.provider_sync import sync_once

logger = Logger(service="billow")


def sync(record: BusRecord[Command[ProviderSyncRequested]], context: LambdaContext) -> None:
    sync_once(dependencies(), record.body.detail, context)


lambda_handler = sqs_consumer(BusRecord[Command[ProviderSyncRequested]], sync, logger=logger)
