"""Lambda entry point: invoices pay-in-advance charges, one invoice per event's fee."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.messages import AdvanceFeeDue, Command
from billow.services.usage.advance_fees import invoice_advance_fee

logger = Logger(service="billow")


def invoice(record: BusRecord[Command[AdvanceFeeDue]], context: LambdaContext) -> None:
    command = record.body.detail
    outcome = invoice_advance_fee(dependencies(), command.organization_id, command.payload)
    logger.info(
        "Pay-in-advance fee",
        extra={"transaction_id": command.payload.transaction_id, "outcome": outcome},
    )


lambda_handler = sqs_consumer(BusRecord[Command[AdvanceFeeDue]], invoice, logger=logger)
