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

STRIPE_EVENT_RECEIVED = "stripe.event_received"
PROVIDER_SYNC_REQUESTED = "customer.provider_sync_requested"


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


class StreamConsumer(_Frozen):
    """A function fed from the table's stream, with Lambda event filtering."""

    function: str
    filter_pattern: dict[str, object]
    batch_size: int = 100
    max_retry_attempts: int = 10


class GlobalIndex(_Frozen):
    name: str
    partition_key: str
    sort_key: str


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
    ("POST", "/api/v1/customers"),
    ("GET", "/api/v1/customers"),
    ("GET", "/api/v1/customers/{external_customer_id}"),
    ("DELETE", "/api/v1/customers/{external_customer_id}"),
    ("POST", "/api/v1/customers/{external_customer_id}/checkout_url"),
    ("GET", "/api/v1/customers/{external_customer_id}/payment_methods"),
    ("PUT", "/api/v1/customers/{external_customer_id}/payment_methods/{lago_id}/set_as_default"),
    ("DELETE", "/api/v1/customers/{external_customer_id}/payment_methods/{lago_id}"),
    ("POST", "/api/v1/webhook_endpoints"),
    ("GET", "/api/v1/webhook_endpoints"),
    ("GET", "/api/v1/webhook_endpoints/{lago_id}"),
    ("PUT", "/api/v1/webhook_endpoints/{lago_id}"),
    ("DELETE", "/api/v1/webhook_endpoints/{lago_id}"),
    ("GET", "/checkout/completed"),
)

TOPOLOGY = Topology(
    table=Table(
        name="billow",
        partition_key="PK",
        sort_key="SK",
        ttl_attribute="expires_at",
        indexes=(GlobalIndex(name="GSI1", partition_key="GSI1PK", sort_key="GSI1SK"),),
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
            description="Re-publishes Stripe events left unprocessed",
            calls_stripe=False,
            timeout_s=300,
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
    ),
    schedules=(
        Schedule(
            name="stripe-events-sweep",
            expression="rate(1 hour)",
            function="stripe_events_sweep",
            description="Re-publishes Stripe events still unprocessed after 15 minutes",
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
    ),
)
