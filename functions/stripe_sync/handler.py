"""Lambda entry point: mirrors the catalog in Stripe Billing and records invoices' Stripe
Tax transactions (SQS, partial batch failures, backoff on Stripe errors worth retrying)."""

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.composition import dependencies
from billow.consumers import BusRecord, sqs_consumer
from billow.domain.errors import ProviderError
from billow.domain.webhooks import retry_delay_s
from billow.messages import CatalogSyncStarted, StripeSyncMessage, TaxTransactionRequested
from billow.services.stripe_sync.backfill import request_whole_catalog
from billow.services.stripe_sync.handover import hand_over_at_next_period
from billow.services.stripe_sync.mirror import sync_object
from billow.services.stripe_tax import record_transaction
from billow.topology import TOPOLOGY

logger = Logger(service="billow")
metrics = Metrics(namespace="Billow", service="billow")
RECEIVES = TOPOLOGY.queue("stripe-sync").max_receive_count


def sync(record: BusRecord[StripeSyncMessage], context: LambdaContext) -> None:
    command = record.body.detail.root
    payload = command.payload
    if isinstance(payload, CatalogSyncStarted):
        organization_id = command.organization_id
        asked = request_whole_catalog(dependencies(), organization_id) if payload.catalog else 0
        if payload.subscriptions:
            asked += hand_over_at_next_period(dependencies(), organization_id)
        metrics.add_metric(name="StripeSyncRequested", unit=MetricUnit.Count, value=asked)
        return
    if isinstance(payload, TaxTransactionRequested):
        if record_transaction(dependencies(), command.organization_id, payload.invoice_id):
            metrics.add_metric(name="StripeTaxTransactions", unit=MetricUnit.Count, value=1)
        return
    receives = int(record.attributes.ApproximateReceiveCount)
    try:
        outcome = sync_object(
            dependencies(),
            command.organization_id,
            payload.object_type,
            payload.lago_id,
            last_attempt=receives >= RECEIVES,
        )
    except ProviderError:
        # Stripe is busy or down: come back later rather than at once.
        delay = retry_delay_s(receives, dependencies().settings.sync_retry_base_s)
        dependencies().queues.retry_after(record.eventSourceARN, record.receiptHandle, delay)
        raise
    metrics.add_metric(name=f"StripeSync_{outcome}", unit=MetricUnit.Count, value=1)


lambda_handler = sqs_consumer(BusRecord[StripeSyncMessage], sync, logger=logger, metrics=metrics)
