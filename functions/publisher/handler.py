"""Lambda entry point: puts outbox items from the table stream on the billing bus."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow import tracing
from billow.composition import dependencies
from billow.services.publishing import publish_stream_batch

logger = Logger(service="billow")


@logger.inject_lambda_context
@tracing.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return publish_stream_batch(dependencies(), event)
