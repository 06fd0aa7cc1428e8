"""Billow's topology, declared once as plain data.

Two interpreters read this module: the CDK stack (``stacks/``) turns it into AWS
resources, and the local runtime (``local/``) serves the same routes and feeds the
same handlers from emulators. Adding a route, queue, rule or schedule here makes it
exist in both; ``tests/infra`` checks the synthesized template against it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

EVENT_SOURCE = "billow"
"""``source`` of every event Billow puts on its bus."""
NAMESPACE = "Billow"
"""CloudWatch namespace of Billow's own metrics."""
SERVICE = "billow"
"""The ``service`` dimension Powertools gives every metric, and the log's service name."""
RECONCILIATION_REPAIRS = "ReconciliationRepairs"
"""What the hourly reconciliation with Stripe had to put right (0 when nothing)."""
RECONCILIATION_FAILURES = "ReconciliationFailures"
"""Organizations or charge attempts the hourly reconciliation failed on (0 when none)."""

STRIPE_EVENT_RECEIVED = "stripe.event_received"
PROVIDER_SYNC_REQUESTED = "customer.provider_sync_requested"
PAYMENT_REQUESTED = "invoice.payment_requested"
STRIPE_SYNC_REQUESTED = "stripe.sync_requested"
CATALOG_SYNC_STARTED = "stripe.catalog_sync_started"
TAX_TRANSACTION_REQUESTED = "stripe.tax_transaction_requested"
ADVANCE_FEE_DUE = "usage.advance_fee_due"
THRESHOLD_CHECK_REQUESTED = "usage.threshold_check_requested"
PAYMENT_FAILURE = "invoice.payment_failure"
PAYMENT_UNMATCHED = "payment.unmatched"
"""A PaymentIntent in Stripe that names an invoice it does not pay (for the finance team)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Function(_Frozen):
    """One Lambda function: its code folder under ``functions/`` and its handler."""

    name: str
    code: str
    handler: str
    description: str
    calls_stripe: bool
    secrets: Literal["none", "read", "manage"] = "none"
    """Access to the Stripe keys in Secrets Manager; only the API stores or removes them."""
    publishes_events: bool = False
    """Only the outbox publisher puts events on the bus; everyone else writes outbox items."""
    sends_to: tuple[str, ...] = ()
    """Queues the function sends messages to itself (fan-out of scheduled work)."""
    publishes_to: tuple[str, ...] = ()
    """Notification topics the function publishes to."""
    memory_mb: int = 256
    timeout_s: int = 30


class Route(_Frozen):
    """An HTTP API route. ``$default`` catches everything else (Lago-shaped 404s)."""

    method: Literal["GET", "POST", "PUT", "DELETE", "ANY"]
    path: str
    function: str

    @property
    def key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


class Queue(_Frozen):
    """An SQS queue with its own DLQ, consumed by one function with partial batch failures."""

    name: str
    consumer: str
    batch_size: int = 10
    max_batching_window_s: int = 0
    visibility_timeout_s: int = 60
    max_receive_count: int = 5
    max_concurrency: int | None = None


class Rule(_Frozen):
    """An EventBridge rule on the billing bus that forwards matching events to a queue."""

    name: str
    description: str
    event_pattern: dict[str, object]
    queue: str


class Schedule(_Frozen):
    """An EventBridge Scheduler schedule invoking a function with ``{"schedule", "time"}``."""

    name: str
    expression: str
    function: str
    description: str


class Topic(_Frozen):
    """A notification topic people subscribe to (SNS in AWS; an inbox queue in local mode)."""

    name: str
    description: str


class Alarm(_Frozen):
    """A CloudWatch alarm on one of Billow's metrics (``NAMESPACE``, dimension
    ``service``), notifying a declared topic when the metric's sum over ``period_s``
    reaches ``threshold``. Alarms exist in AWS only: local mode has no CloudWatch."""

    name: str
    description: str
    metric: str
    topic: str
    threshold: int = 1
    period_s: int = 3600


class StreamConsumer(_Frozen):
    """A function fed from the table's stream, with Lambda event filtering."""

    function: str
    filter_pattern: dict[str, object]
    batch_size: int = 100
    max_batching_window_s: int = 0
    """How long Lambda gathers records before invoking: fewer, larger batches."""
    max_retry_attempts: int = 10
    """-1 retries until the records expire (nothing may be skipped)."""
    bisect_on_error: bool = True
    """Split a failing batch to find the bad record. A consumer whose retries must start
    where its last run stopped (it reports the first record it did not finish) says no."""


class GlobalIndex(_Frozen):
    name: str
    partition_key: str
    sort_key: str
    projected: tuple[str, ...] | None = None
    """Attributes copied into the index besides the keys; None copies whole items and ``()``
    only the keys. An index entry costs write units for its size each time it is written,
    so an index that only points at items copies just what its queries read."""


class Table(_Frozen):
    """The single on-demand table; ``billow.adapters.dynamodb`` lists every access pattern."""

    name: str
    partition_key: str
    sort_key: str
    ttl_attribute: str
    indexes: tuple[GlobalIndex, ...]


class Topology(_Frozen):
    table: Table
    bus_name: str
    functions: tuple[Function, ...]
    routes: tuple[Route, ...]
    queues: tuple[Queue, ...]
    rules: tuple[Rule, ...]
    schedules: tuple[Schedule, ...]
    stream_consumers: tuple[StreamConsumer, ...]
    topics: tuple[Topic, ...]
    alarms: tuple[Alarm, ...] = ()

    def function(self, name: str) -> Function:
        return next(f for f in self.functions if f.name == name)

    def queue(self, name: str) -> Queue:
        return next(q for q in self.queues if q.name == name)

    def schedule(self, name: str) -> Schedule:
        return next(s for s in self.schedules if s.name == name)


API_ROUTES: tuple[tuple[Literal["GET", "POST", "PUT", "DELETE"], str], ...] = (
    ("POST", "/api/v1/integrations/stripe"),
    ("GET", "/api/v1/integrations/stripe"),
    ("DELETE", "/api/v1/integrations/stripe/{code}"),
    ("POST", "/api/v1/integrations/stripe/{code}/resync"),
    ("POST", "/api/v1/customers"),
    ("GET", "/api/v1/customers"),
    ("GET", "/api/v1/customers/{external_customer_id}"),
    ("DELETE", "/api/v1/customers/{external_customer_id}"),
    ("POST", "/api/v1/customers/{external_customer_id}/checkout_url"),
    ("GET", "/api/v1/customers/{external_customer_id}/portal_url"),
    ("GET", "/api/v1/customers/{external_customer_id}/payment_methods"),
    ("PUT", "/api/v1/customers/{external_customer_id}/payment_methods/{lago_id}/set_as_default"),
    ("DELETE", "/api/v1/customers/{external_customer_id}/payment_methods/{lago_id}"),
    ("POST", "/api/v1/webhook_endpoints"),
    ("GET", "/api/v1/webhook_endpoints"),
    ("GET", "/api/v1/webhook_endpoints/{lago_id}"),
    ("PUT", "/api/v1/webhook_endpoints/{lago_id}"),
    ("DELETE", "/api/v1/webhook_endpoints/{lago_id}"),
    ("PUT", "/api/v1/organizations"),
    ("POST", "/api/v1/taxes"),
    ("GET", "/api/v1/taxes"),
    ("GET", "/api/v1/taxes/{code}"),
    ("PUT", "/api/v1/taxes/{code}"),
    ("DELETE", "/api/v1/taxes/{code}"),
    ("POST", "/api/v1/plans"),
    ("GET", "/api/v1/plans"),
    ("GET", "/api/v1/plans/{code}"),
    ("PUT", "/api/v1/plans/{code}"),
    ("DELETE", "/api/v1/plans/{code}"),
    ("GET", "/api/v1/plans/{code}/charges"),
    ("POST", "/api/v1/plans/{code}/charges"),
    ("GET", "/api/v1/plans/{code}/charges/{charge_code}"),
    ("PUT", "/api/v1/plans/{code}/charges/{charge_code}"),
    ("DELETE", "/api/v1/plans/{code}/charges/{charge_code}"),
    ("POST", "/api/v1/add_ons"),
    ("GET", "/api/v1/add_ons"),
    ("GET", "/api/v1/add_ons/{code}"),
    ("PUT", "/api/v1/add_ons/{code}"),
    ("DELETE", "/api/v1/add_ons/{code}"),
    ("POST", "/api/v1/coupons"),
    ("GET", "/api/v1/coupons"),
    ("GET", "/api/v1/coupons/{code}"),
    ("PUT", "/api/v1/coupons/{code}"),
    ("DELETE", "/api/v1/coupons/{code}"),
    ("POST", "/api/v1/applied_coupons"),
    ("GET", "/api/v1/applied_coupons"),
    ("GET", "/api/v1/customers/{external_customer_id}/applied_coupons"),
    ("DELETE", "/api/v1/customers/{external_customer_id}/applied_coupons/{applied_coupon_id}"),
    ("POST", "/api/v1/subscriptions"),
    ("GET", "/api/v1/subscriptions"),
    ("GET", "/api/v1/subscriptions/{external_id}"),
    ("PUT", "/api/v1/subscriptions/{external_id}"),
    ("DELETE", "/api/v1/subscriptions/{external_id}"),
    ("GET", "/api/v1/customers/{external_customer_id}/subscriptions"),
    ("POST", "/api/v1/invoices"),
    ("GET", "/api/v1/invoices"),
    ("GET", "/api/v1/invoices/{lago_id}"),
    ("POST", "/api/v1/invoices/{lago_id}/void"),
    ("POST", "/api/v1/invoices/{lago_id}/retry_payment"),
    ("POST", "/api/v1/invoices/{lago_id}/payment_url"),
    ("GET", "/api/v1/customers/{external_customer_id}/invoices"),
    ("POST", "/api/v1/billable_metrics"),
    ("GET", "/api/v1/billable_metrics"),
    ("GET", "/api/v1/billable_metrics/{code}"),
    ("PUT", "/api/v1/billable_metrics/{code}"),
    ("DELETE", "/api/v1/billable_metrics/{code}"),
    ("POST", "/api/v1/events"),
    ("POST", "/api/v1/events/batch"),
    ("GET", "/api/v1/events/{transaction_id}"),
    ("GET", "/api/v1/customers/{external_customer_id}/current_usage"),
    ("GET", "/api/v1/customers/{external_customer_id}/past_usage"),
    ("GET", "/checkout/completed"),
)

TOPOLOGY = Topology(
    table=Table(
        name="billow",
        partition_key="PK",
        sort_key="SK",
        ttl_attribute="expires_at",
        indexes=(
            GlobalIndex(name="GSI1", partition_key="GSI1PK", sort_key="GSI1SK"),
            GlobalIndex(
                name="GSI2",
                partition_key="GSI2PK",
                sort_key="GSI2SK",
                projected=("organization_id", "lago_id"),
            ),
            # The list indexes (``billow.adapters.listing``): keys only, so an entry costs
            # one write unit and a page reads the keys before it, never the items.
            *(
                GlobalIndex(
                    name=name, partition_key=f"{name}PK", sort_key=f"{name}SK", projected=()
                )
                for name in ("GSI3", "GSI4", "GSI5", "GSI6")
            ),
        ),
    ),
    bus_name="billow",
    functions=(
        Function(
            name="api",
            code="api",
            handler="handler.lambda_handler",
            description="Lago REST API (/api/v1)",
            calls_stripe=True,
            secrets="manage",
            memory_mb=512,
            timeout_s=29,
        ),
        Function(
            name="stripe_webhook",
            code="stripe_webhook",
            handler="handler.lambda_handler",
            description="Stripe webhook intake: verify, de-duplicate, persist",
            calls_stripe=False,
            secrets="read",
            timeout_s=10,
        ),
        Function(
            name="stripe_events",
            code="stripe_events",
            handler="handler.lambda_handler",
            description="Processes stored Stripe events",
            calls_stripe=True,
            secrets="read",
        ),
        Function(
            name="stripe_events_sweep",
            code="stripe_events",
            handler="sweep.lambda_handler",
            description="Hourly reconciliation with Stripe: events, stuck events, charges",
            calls_stripe=True,
            secrets="read",
            timeout_s=900,
        ),
        Function(
            name="publisher",
            code="publisher",
            handler="handler.lambda_handler",
            description="Puts outbox items from the table stream on the billing bus",
            calls_stripe=False,
            publishes_events=True,
        ),
        Function(
            name="webhook_delivery",
            code="webhook_delivery",
            handler="handler.lambda_handler",
            description="Delivers signed Lago webhooks to the organization's endpoints",
            calls_stripe=False,
            timeout_s=60,
        ),
        Function(
            name="provider_sync",
            code="provider_sync",
            handler="handler.lambda_handler",
            description="Keeps customers in step with Stripe",
            calls_stripe=True,
            secrets="read",
            timeout_s=60,
        ),
        Function(
            name="stripe_sync",
            code="stripe_sync",
            handler="handler.lambda_handler",
            description="Mirrors plans, add-ons and coupons in Stripe Billing",
            calls_stripe=True,
            secrets="read",
            timeout_s=120,
        ),
        Function(
            name="billing_run",
            code="billing_run",
            handler="handler.lambda_handler",
            description="Finds the subscriptions due at the scheduled time and queues each once",
            calls_stripe=False,
            sends_to=("invoice-work",),
            timeout_s=300,
        ),
        Function(
            name="invoice_worker",
            code="invoice_worker",
            handler="handler.lambda_handler",
            description="Bills one subscription's due period: exactly one invoice per period",
            calls_stripe=False,
            timeout_s=60,
        ),
        Function(
            name="payments",
            code="payments",
            handler="handler.lambda_handler",
            description="Charges finalized invoices with one Stripe PaymentIntent per attempt",
            calls_stripe=True,
            secrets="read",
            timeout_s=60,
        ),
        Function(
            name="dunning",
            code="dunning",
            handler="handler.lambda_handler",
            description="Plans the next automatic payment retry after a failed charge",
            calls_stripe=False,
        ),
        Function(
            name="dunning_run",
            code="dunning",
            handler="run.lambda_handler",
            description="Starts the payment retries that are due at the scheduled time",
            calls_stripe=False,
            timeout_s=300,
        ),
        Function(
            name="usage_aggregator",
            code="usage_aggregator",
            handler="handler.lambda_handler",
            description="Folds each new usage event into its charges' aggregates, once",
            calls_stripe=False,
            timeout_s=120,
        ),
        Function(
            name="usage_invoices",
            code="usage_invoices",
            handler="handler.lambda_handler",
            description="Invoices usage within a period: pay-in-advance fees, thresholds",
            calls_stripe=False,
        ),
        Function(
            name="finance_alerts",
            code="finance_alerts",
            handler="handler.lambda_handler",
            description="Tells the finance team about failed payments",
            calls_stripe=False,
            publishes_to=("finance-alerts",),
        ),
    ),
    routes=(
        *(Route(method=method, path=path, function="api") for method, path in API_ROUTES),
        Route(method="POST", path="/webhooks/stripe/{organization_id}", function="stripe_webhook"),
        Route(method="ANY", path="$default", function="api"),
    ),
    queues=(
        Queue(
            name="stripe-events",
            consumer="stripe_events",
            visibility_timeout_s=180,
            max_concurrency=20,
        ),
        Queue(
            name="webhook-delivery",
            consumer="webhook_delivery",
            visibility_timeout_s=360,
            max_receive_count=8,
        ),
        Queue(
            name="provider-sync",
            consumer="provider_sync",
            visibility_timeout_s=360,
            max_concurrency=10,
        ),
        Queue(
            # Stripe allows about 100 requests a second per account in live mode; five
            # syncs at a time stay well under it whatever the size of the catalog.
            name="stripe-sync",
            consumer="stripe_sync",
            visibility_timeout_s=720,
            max_receive_count=8,
            max_concurrency=5,
        ),
        Queue(
            name="invoice-work",
            consumer="invoice_worker",
            visibility_timeout_s=360,
            max_concurrency=20,
        ),
        Queue(
            name="payments",
            consumer="payments",
            visibility_timeout_s=360,
            max_receive_count=8,
            max_concurrency=5,
        ),
        Queue(name="dunning", consumer="dunning", visibility_timeout_s=180),
        Queue(name="usage-invoices", consumer="usage_invoices", visibility_timeout_s=180),
        Queue(name="finance-alerts", consumer="finance_alerts", visibility_timeout_s=180),
    ),
    rules=(
        Rule(
            name="outgoing-webhooks",
            description="Every Lago webhook event goes to the delivery queue",
            event_pattern={"source": [EVENT_SOURCE], "detail": {"webhook": [True]}},
            queue="webhook-delivery",
        ),
        Rule(
            name="stripe-events",
            description="Stripe events stored by the intake are processed asynchronously",
            event_pattern={"source": [EVENT_SOURCE], "detail-type": [STRIPE_EVENT_RECEIVED]},
            queue="stripe-events",
        ),
        Rule(
            name="provider-sync",
            description="Customers that need creating or updating in Stripe",
            event_pattern={"source": [EVENT_SOURCE], "detail-type": [PROVIDER_SYNC_REQUESTED]},
            queue="provider-sync",
        ),
        Rule(
            name="stripe-sync",
            description="Catalog objects to mirror in Stripe Billing, whole catalogs, and "
            "invoices' Stripe Tax transactions",
            event_pattern={
                "source": [EVENT_SOURCE],
                "detail-type": [
                    STRIPE_SYNC_REQUESTED,
                    CATALOG_SYNC_STARTED,
                    TAX_TRANSACTION_REQUESTED,
                ],
            },
            queue="stripe-sync",
        ),
        Rule(
            name="payments",
            description="Finalized invoices (and every retry) to charge through Stripe",
            event_pattern={"source": [EVENT_SOURCE], "detail-type": [PAYMENT_REQUESTED]},
            queue="payments",
        ),
        Rule(
            name="usage-invoices",
            description="Pay-in-advance charges' fees (an invoice per event) and usage to "
            "hold against progressive billing's thresholds",
            event_pattern={
                "source": [EVENT_SOURCE],
                "detail-type": [ADVANCE_FEE_DUE, THRESHOLD_CHECK_REQUESTED],
            },
            queue="usage-invoices",
        ),
        Rule(
            name="dunning",
            description="Failed payments schedule the next automatic retry",
            event_pattern={"source": [EVENT_SOURCE], "detail-type": [PAYMENT_FAILURE]},
            queue="dunning",
        ),
        Rule(
            name="finance-alerts",
            description="Failed payments and payments Billow will not apply alert finance",
            event_pattern={
                "source": [EVENT_SOURCE],
                "detail-type": [PAYMENT_FAILURE, PAYMENT_UNMATCHED],
            },
            queue="finance-alerts",
        ),
    ),
    schedules=(
        Schedule(
            name="stripe-events-sweep",
            expression="rate(1 hour)",
            function="stripe_events_sweep",
            description="Reconciles with Stripe: lost events, stuck events, silent charges",
        ),
        Schedule(
            name="billing-run",
            expression="rate(1 hour)",
            function="billing_run",
            description="Bills every subscription whose billing time has come",
        ),
        Schedule(
            name="dunning-run",
            expression="rate(1 hour)",
            function="dunning_run",
            description="Retries failed payments whose retry time has come",
        ),
    ),
    stream_consumers=(
        StreamConsumer(
            function="publisher",
            filter_pattern={
                "eventName": ["INSERT"],
                "dynamodb": {"NewImage": {"kind": {"S": ["outbox"]}}},
            },
        ),
        StreamConsumer(
            # Only an event's first write: a retried write of it is a MODIFY.
            function="usage_aggregator",
            filter_pattern={
                "eventName": ["INSERT"],
                "dynamodb": {"NewImage": {"kind": {"S": ["usage_event"]}}},
            },
            batch_size=1000,
            max_batching_window_s=1,
            max_retry_attempts=-1,
            bisect_on_error=False,
        ),
    ),
    topics=(
        Topic(name="finance-alerts", description="Failed payments, for the finance team"),
        Topic(
            name="operations-alerts",
            description="Alarms for the people who run Billow (drift repaired with Stripe)",
        ),
    ),
    alarms=(
        Alarm(
            name="reconciliation-repairs",
            description=(
                "The hourly reconciliation with Stripe found lost events, stuck events or "
                "silent charges and repaired them: something upstream is losing work"
            ),
            metric=RECONCILIATION_REPAIRS,
            topic="operations-alerts",
        ),
        Alarm(
            name="reconciliation-failures",
            description=(
                "The hourly reconciliation with Stripe failed on an organization or a charge "
                "attempt and went on with the others: its logs hold the traceback"
            ),
            metric=RECONCILIATION_FAILURES,
            topic="operations-alerts",
        ),
    ),
)
