"""Lambda entry point: charges invoices (one PaymentIntent per requested attempt)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.messages import ChargeRequested, Command
from billow.services.payments.charging import charge

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="billow")


def charge_invoice(record: BusRecord[Command[ChargeRequested]], context: LambdaContext) -> None:
    command = record.body.detail
    requested = command.payload
    outcome = charge(dependencies(), command.organization_id, requested)
    metrics.add_metric(name=f"Charge_{outcome}", unit=MetricUnit.Count, value=1)
    logger.info(
        "Charge attempt",
        extra={"invoice": requested.invoice_id, "attempt": requested.attempt, "outcome": outcome},
    )


lambda_handler = sqs_consumer(
    BusRecord[Command[ChargeRequested]], charge_invoice, logger=logger, metrics=metrics
)
