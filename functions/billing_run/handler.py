"""Lambda entry point for the hourly ``billing-run`` schedule."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow import tracing
from billow.composition import dependencies
from billow.domain.clock import parse_iso, utcnow
from billow.services.billing_run import run
from billow.services.invoice_numbering import number_stranded

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="billow")


@logger.inject_lambda_context
@tracing.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ "Now" is the scheduled time carried by the event, never the wall clock."""
    now = parse_iso(event["time"])
    queued = run(dependencies(), now)
    # Stranded is judged on the wall clock: it is about a numberer that stopped, not billing.
    numbered = number_stranded(dependencies(), utcnow())
    metrics.add_metric(name="SubscriptionsDue", unit=MetricUnit.Count, value=queued)
    metrics.add_metric(name="StrandedInvoicesNumbered", unit=MetricUnit.Count, value=numbered)
    logger.info(
        "Billing run", extra={"time": event["time"], "queued": queued, "numbered": numbered}
    )
    return {"queued": queued, "numbered": numbered}
