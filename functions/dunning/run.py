"""Lambda entry point for the hourly ``dunning-run`` schedule."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow import tracing
from billow.composition import dependencies
from billow.domain.clock import parse_iso
from billow.services.dunning import run_due_retries

logger = Logger(service="billow")


@logger.inject_lambda_context
@tracing.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ "Now" is the scheduled time carried by the event, never the wall clock."""
    now = parse_iso(event["time"])
    return {"retries_started": run_due_retries(dependencies(), now)}
