"""Lambda entry point for the ``stripe-events-sweep`` schedule."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.domain.clock import parse_iso
from billow.services.stripe_events import sweep

logger = Logger(service="billow")
tracer = Tracer(service="billow")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ "Now" is the scheduled time carried by the event, never the wall clock."""
    now = parse_iso(event["time"])
    return {"republished": sweep(dependencies(), now)}
