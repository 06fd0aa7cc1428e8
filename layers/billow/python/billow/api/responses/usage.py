"""Lago's usage objects as served: billable metrics, charges, events and usage."""

from __future__ import annotations

from typing import Any, Literal

from billow.api.responses.common import Day, LagoObject, PaginationMeta, Timestamp
from billow.domain.usage import AggregationType, ChargeModelName, RoundingFunction


class MetricFilterObject(LagoObject):
    key: str
    values: list[str]


class BillableMetricObject(LagoObject):
    lago_id: str
    name: str
    code: str
    description: str | None
    aggregation_type: AggregationType
    weighted_interval: Literal["seconds"] | None
    recurring: bool
    rounding_function: RoundingFunction | None
    rounding_precision: int | None
    created_at: Timestamp
    field_name: str | None
    expression: str
    """Always empty: Billow aggregates a property (``field_name``), not an expression."""
    filters: list[MetricFilterObject]


class BillableMetricResponse(LagoObject):
    billable_metric: BillableMetricObject


class BillableMetricsPage(LagoObject):
    billable_metrics: list[BillableMetricObject]
    meta: PaginationMeta


class EventObject(LagoObject):
    lago_id: str | None
    transaction_id: str
    lago_customer_id: None
    code: str
    timestamp: Timestamp
    precise_total_amount_cents: str | None
    properties: dict[str, Any]
    lago_subscription_id: str | None
    external_subscription_id: str
    created_at: Timestamp | None


class EventResponse(LagoObject):
    event: EventObject


class EventsResponse(LagoObject):
    events: list[EventObject]


class UsageChargeRef(LagoObject):
    lago_id: str
    charge_model: ChargeModelName
    invoice_display_name: str | None


class UsageMetricRef(LagoObject):
    lago_id: str
    name: str
    code: str
    aggregation_type: AggregationType


class ChargeFilterUsage(LagoObject):
    units: str
    total_aggregated_units: str
    events_count: int
    amount_cents: int
    invoice_display_name: str
    values: dict[str, list[str]]


class ChargeUsageObject(LagoObject):
    units: str
    total_aggregated_units: str
    events_count: int
    amount_cents: int
    amount_currency: str
    charge: UsageChargeRef
    billable_metric: UsageMetricRef
    filters: list[ChargeFilterUsage]
    grouped_usage: list[Any]


class CustomerUsageObject(LagoObject):
    from_datetime: Timestamp
    to_datetime: Timestamp
    issuing_date: Day
    lago_invoice_id: None
    currency: str
    amount_cents: int
    taxes_amount_cents: int
    total_amount_cents: int
    charges_usage: list[ChargeUsageObject]


class CustomerUsageResponse(LagoObject):
    customer_usage: CustomerUsageObject


class PastUsageResponse(LagoObject):
    usage_periods: list[CustomerUsageObject]
    meta: PaginationMeta
