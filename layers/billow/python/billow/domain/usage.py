"""Usage: billable metrics, the events customers send, the charges plans price them with,
and the running aggregate each charge keeps of a period's events.

Billing never reads events. Each event is folded into its charge's aggregate for the
period it falls in as it arrives (``AggregateState.fold``), and the aggregate holds
everything any of Lago's aggregations needs at the period's end: a count, a sum, a
maximum, the latest value, a time-weighted sum, and the earliest values (for a
percentage charge's free events). Every fold is commutative, so events folded in any
order, or in batches from several stream shards, give the same aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, Field

from billow.domain.clock import iso

AggregationType = Literal[
    "count_agg", "sum_agg", "max_agg", "unique_count_agg", "latest_agg", "weighted_sum_agg"
]
RoundingFunction = Literal["round", "ceil", "floor"]

RECURRING_AGGREGATIONS = frozenset({"sum_agg", "unique_count_agg", "weighted_sum_agg"})
"""Lago forbids ``recurring`` for counts, maxima and latest values: they restart each period."""
NUMERIC_AGGREGATIONS = frozenset({"sum_agg", "max_agg", "latest_agg", "weighted_sum_agg"})

EARLIEST_VALUES_KEPT = 1000
"""How many of a period's earliest values an aggregate keeps for a percentage charge's
``free_units_per_events``; a charge may not offer more free events than this."""


class MetricFilter(BaseModel):
    """A property of the events and the values a charge may price differently."""

    key: str
    values: list[str]


class BillableMetric(BaseModel):
    lago_id: str
    organization_id: str
    name: str
    code: str
    description: str | None = None
    aggregation_type: AggregationType
    field_name: str | None = None
    recurring: bool = False
    rounding_function: RoundingFunction | None = None
    rounding_precision: int | None = None
    filters: list[MetricFilter] = Field(default_factory=list)
    created_at: str
    deleted_at: str | None = None
    """Deleted metrics stay readable by id: plans' charges and invoices' fees name them."""
    version: int = 0

    def as_lago(self) -> dict[str, object]:
        """Lago's BillableMetricObject."""
        return {
            "lago_id": self.lago_id,
            "name": self.name,
            "code": self.code,
            "description": self.description,
            "aggregation_type": self.aggregation_type,
            "weighted_interval": "seconds" if self.aggregation_type == "weighted_sum_agg" else None,
            "recurring": self.recurring,
            "rounding_function": self.rounding_function,
            "rounding_precision": self.rounding_precision,
            "created_at": self.created_at,
            "field_name": self.field_name,
            "expression": "",
            "filters": [item.model_dump() for item in self.filters],
        }

    def rounded(self, units: Decimal) -> Decimal:
        """The metric's own rounding of a period's units (none unless it asks for one)."""
        if self.rounding_function is None:
            return units
        quantum = Decimal(1).scaleb(-(self.rounding_precision or 0))
        mode = {"round": ROUND_HALF_UP, "ceil": ROUND_CEILING, "floor": ROUND_FLOOR}
        return units.quantize(quantum, rounding=mode[self.rounding_function])


# -- charges ------------------------------------------------------------------------------

ChargeModelName = Literal[
    "standard", "graduated", "volume", "package", "percentage", "graduated_percentage"
]


class ChargeFilter(BaseModel):
    """Different pricing for the events whose properties hold these values."""

    lago_id: str
    invoice_display_name: str | None = None
    properties: dict[str, Any]
    """As Lago serves them (``billow.domain.charge_models.properties_as_lago``)."""
    values: dict[str, list[str]]

    @property
    def display_name(self) -> str:
        """Its own name on invoices, else the values it prices (as Lago shows them)."""
        return self.invoice_display_name or ", ".join(
            value for values in self.values.values() for value in values
        )

    def matches(self, properties: dict[str, Any]) -> bool:
        return all(str(properties.get(key)) in allowed for key, allowed in self.values.items())


class Charge(BaseModel):
    """A plan's price for a billable metric's usage, billed at the end of each period."""

    lago_id: str
    billable_metric_id: str
    billable_metric_code: str
    code: str | None = None
    invoice_display_name: str | None = None
    charge_model: ChargeModelName
    pay_in_advance: bool = False
    invoiceable: bool = True
    prorated: bool = False
    min_amount_cents: int = 0
    properties: dict[str, Any]
    filters: list[ChargeFilter] = Field(default_factory=list)
    tax_codes: list[str] = Field(default_factory=list)
    created_at: str

    def as_lago(self, taxes: Sequence[Any]) -> dict[str, object]:
        """Lago's ChargeObject; ``taxes`` are the charge's own (``Tax`` objects)."""
        return {
            "lago_id": self.lago_id,
            "lago_billable_metric_id": self.billable_metric_id,
            "billable_metric_code": self.billable_metric_code,
            "code": self.code,
            "invoice_display_name": self.invoice_display_name,
            "created_at": self.created_at,
            "charge_model": self.charge_model,
            "pay_in_advance": self.pay_in_advance,
            "invoiceable": self.invoiceable,
            "regroup_paid_fees": None,
            "prorated": self.prorated,
            "min_amount_cents": self.min_amount_cents,
            "properties": self.properties,
            "filters": [
                {
                    "invoice_display_name": item.invoice_display_name,
                    "properties": item.properties,
                    "values": item.values,
                }
                for item in self.filters
            ],
            "taxes": [tax.as_lago() for tax in taxes],
        }

    def filter_for(self, properties: dict[str, Any]) -> ChargeFilter | None:
        """The filter an event is priced by: the most specific one it matches (the one
        naming the most keys); None prices it by the charge's own properties."""
        matching = [item for item in self.filters if item.matches(properties)]
        return max(matching, key=lambda item: len(item.values)) if matching else None


class UsageThreshold(BaseModel):
    """Lago's progressive billing: once a period's usage reaches ``amount_cents``, what it
    came to so far is invoiced at once. A recurring threshold repeats every
    ``amount_cents`` above the highest fixed one."""

    lago_id: str
    threshold_display_name: str | None = None
    amount_cents: int
    recurring: bool = False
    created_at: str

    def as_lago(self) -> dict[str, object]:
        return {
            "lago_id": self.lago_id,
            "threshold_display_name": self.threshold_display_name,
            "amount_cents": self.amount_cents,
            "recurring": self.recurring,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


def thresholds_reached(
    thresholds: Sequence[UsageThreshold], amount_cents: int
) -> tuple[int, UsageThreshold | None]:
    """How many threshold levels a period's usage has reached, and the last one: the
    fixed thresholds in ascending order, then the recurring one every time its amount
    is added again above the highest fixed one."""
    fixed = sorted((t for t in thresholds if not t.recurring), key=lambda t: t.amount_cents)
    reached = [t for t in fixed if amount_cents >= t.amount_cents]
    level, last = len(reached), (reached[-1] if reached else None)
    recurring = next((t for t in thresholds if t.recurring), None)
    if recurring is not None and recurring.amount_cents > 0:
        base = fixed[-1].amount_cents if fixed else 0
        if amount_cents >= base + recurring.amount_cents:
            level += (amount_cents - base) // recurring.amount_cents
            last = recurring
    return level, last


# -- events -------------------------------------------------------------------------------


class UsageEvent(BaseModel):
    """An event as received and kept (``GET /events/{transaction_id}``, audits)."""

    lago_id: str
    organization_id: str
    transaction_id: str
    external_subscription_id: str
    code: str
    timestamp: str
    """ISO 8601 with milliseconds, as Lago serves it."""
    properties: dict[str, Any] = Field(default_factory=dict)
    precise_total_amount_cents: str | None = None
    created_at: str

    def same_as(self, other: UsageEvent) -> bool:
        """Whether ``other`` is this event sent again (a retry), not another one reusing
        its transaction id."""
        fields = ("code", "timestamp", "properties", "precise_total_amount_cents")
        return all(getattr(self, name) == getattr(other, name) for name in fields)

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.timestamp)

    def as_lago(self, lago_subscription_id: str | None = None) -> dict[str, object]:
        """Lago's EventObject."""
        return {
            "lago_id": self.lago_id,
            "transaction_id": self.transaction_id,
            "lago_customer_id": None,
            "code": self.code,
            "timestamp": self.timestamp,
            "precise_total_amount_cents": self.precise_total_amount_cents,
            "properties": self.properties,
            "lago_subscription_id": lago_subscription_id,
            "external_subscription_id": self.external_subscription_id,
            "created_at": self.created_at,
        }


def iso_ms(moment: datetime) -> str:
    """Lago's event timestamps: UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: object) -> datetime:
    """An event's time: Unix seconds (integer, decimal or either as a string) or ISO 8601;
    ``ValueError('invalid_format')`` otherwise."""
    if isinstance(value, bool):
        raise ValueError("invalid_format")
    try:
        if isinstance(value, int | float):
            seconds = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        elif isinstance(value, str):
            try:
                seconds = Decimal(value.strip())
            except InvalidOperation:
                moment = datetime.fromisoformat(value.strip())
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        else:
            raise ValueError("invalid_format")
        if not seconds.is_finite() or not 0 <= seconds < 253402300800:
            raise ValueError("invalid_format")
        return datetime.fromtimestamp(float(seconds), UTC)
    except (ValueError, InvalidOperation, OverflowError):
        raise ValueError("invalid_format") from None


def numeric(value: object) -> Decimal | None:
    """A property's numeric value (numbers and numeric strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


# -- aggregates ---------------------------------------------------------------------------


class Contribution(BaseModel):
    """One event's part in one aggregate."""

    transaction_id: str
    timestamp: str
    value: Decimal | None = None
    """The metric's field (None for ``count_agg``)."""
    distinct_change: int = 0
    """For ``unique_count_agg``: +1 a value became present, −1 it was removed, 0 neither."""


class AggregateState(BaseModel):
    """Everything a period's events add up to for one charge (and one of its filters)."""

    events_count: int = 0
    total: Decimal = Decimal(0)
    """Sum of values (``sum_agg``) or of distinct changes (``unique_count_agg``)."""
    maximum: Decimal | None = None
    latest: tuple[str, str, Decimal] | None = None
    """(timestamp, transaction id, value) of the latest event; ties go to the larger id so
    the result does not depend on arrival order."""
    weighted_seconds: Decimal = Decimal(0)
    """Σ value × seconds from the event to the period's end (``weighted_sum_agg``)."""
    earliest: list[tuple[str, str, Decimal]] = Field(default_factory=list)
    """The period's earliest values, oldest first (percentage charges' free events)."""

    def fold(
        self, contribution: Contribution, period_end: datetime, keep_earliest: int
    ) -> AggregateState:
        value = contribution.value
        update: dict[str, Any] = {
            "events_count": self.events_count + 1,
            "total": self.total + (value or 0) + contribution.distinct_change,
        }
        if value is not None:
            moment = datetime.fromisoformat(contribution.timestamp)
            seconds = max(Decimal(0), Decimal(str((period_end - moment).total_seconds())))
            update["weighted_seconds"] = self.weighted_seconds + value * seconds
            update["maximum"] = value if self.maximum is None else max(self.maximum, value)
            mark = (contribution.timestamp, contribution.transaction_id, value)
            if self.latest is None or mark[:2] > self.latest[:2]:
                update["latest"] = mark
            if keep_earliest:
                update["earliest"] = sorted([*self.earliest, mark])[:keep_earliest]
        return self.model_copy(update=update)

    def units(
        self,
        metric: BillableMetric,
        carried: Decimal,
        period: tuple[datetime, datetime],
    ) -> Decimal:
        """The period's units before the metric's rounding. ``carried`` is what a
        recurring metric brought from earlier periods (its value at the period's start)."""
        kind = metric.aggregation_type
        if kind == "count_agg":
            return Decimal(self.events_count)
        if kind == "max_agg":
            return self.maximum or Decimal(0)
        if kind == "latest_agg":
            return max(self.latest[2], Decimal(0)) if self.latest else Decimal(0)
        if kind == "weighted_sum_agg":
            seconds = Decimal(math.floor((period[1] - period[0]).total_seconds())) or Decimal(1)
            return carried + self.weighted_seconds / seconds
        return carried + self.total

    def first_values(self) -> list[Decimal]:
        return [value for _, _, value in self.earliest]


def period_key(start: datetime) -> str:
    return iso(start)
