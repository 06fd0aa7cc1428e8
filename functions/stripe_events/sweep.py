"""Lambda entry point for the ``stripe-events-sweep`` schedule: the hourly reconciliation
with Stripe (``billow.services.reconciliation``)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow import tracing
from billow.composition import dependencies
from billow.domain.clock import parse_iso
from billow.services.reconciliation import SweepReport, sweep
from billow.topology import NAMESPACE, RECONCILIATION_FAILURES, RECONCILIATION_REPAIRS, SERVICE

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

COUNTED = {
    "events_recovered": "StripeEventsRecovered",
    "events_republished": "StripeEventsRepublished",
    "payments_settled": "PaymentsSettledByReconciliation",
    "attempts_redriven": "PaymentAttemptsRedriven",
    "accounts_unreachable": "StripeAccountsUnreachable",
    "failures": RECONCILIATION_FAILURES,
}
"""Report fields and the metric each becomes."""


def _publish(report: SweepReport) -> None:
    """The totals (always, zero included, so the alarm has data every hour) and, per
    organization that needed anything, its own figures and a log line saying what."""
    metrics.add_metric(name=RECONCILIATION_REPAIRS, unit=MetricUnit.Count, value=report.repaired)
    for field, metric in COUNTED.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=report.total(field))
    for repairs in report.organizations:
        logger.warning("Reconciliation repaired drift with Stripe", extra=repairs.model_dump())
        with single_metric(
            name=RECONCILIATION_REPAIRS,
            unit=MetricUnit.Count,
            value=repairs.repaired,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as per_organization:
            per_organization.add_dimension(name="organization_id", value=repairs.organization_id)


@logger.inject_lambda_context
@tracing.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ "Now" is the scheduled time carried by the event, never the wall clock."""
    report = sweep(dependencies(), parse_iso(event["time"]))
    _publish(report)
    return {
        "repaired": report.repaired,
        **{field: report.total(field) for field in COUNTED},
        "organizations": [repairs.model_dump() for repairs in report.organizations],
    }
