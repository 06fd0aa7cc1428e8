"""Lambda entry point: invoices usage within a period, as it happens: each event's
pay-in-advance fee, and usage that reached a progressive billing threshold."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.messages import AdvanceFeeDue, UsageInvoiceMessage
from billow.services.usage.advance_fees import invoice_advance_fee
from billow.services.usage.progressive import check_thresholds

logger = Logger(service="billow")


def invoice(record: BusRecord[UsageInvoiceMessage], context: LambdaContext) -> None:
    command = record.body.detail.root
    payload = command.payload
    outcome: str
    if isinstance(payload, AdvanceFeeDue):
        outcome = invoice_advance_fee(dependencies(), command.organization_id, payload)
    else:
        outcome = check_thresholds(dependencies(), command.organization_id, payload)
    logger.info("Usage invoice", extra={"command": command.event_type, "outcome": outcome})


lambda_handler = sqs_consumer(BusRecord[UsageInvoiceMessage], invoice, logger=logger)
