"""Billable metrics (Lago's /billable_metrics): what usage events count and how.

A metric that plans price (``store.usage.plans_using``) keeps what its aggregates were built on, as
Lago does: its code, aggregation, field, recurrence and filters stay, only its name,
description and rounding change; and it cannot be deleted while a plan charges for it
(Lago would drop those plans' charges silently; Billow refuses and says why).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import Name, Text
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.identifiers import Identifier
from billow.domain.usage import (
    RECURRING_AGGREGATIONS,
    AggregationType,
    BillableMetric,
    MetricFilter,
    RoundingFunction,
)
from billow.services.catalog_writes import (
    CatalogInput,
    code_taken,
    commit_claiming_code,
    updates_from,
)

FilterValue = Annotated[str, Field(min_length=1, max_length=255)]


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("value_is_duplicated")
    return values


class MetricFilterInput(CatalogInput):
    key: Annotated[str, Field(min_length=1, max_length=255)]
    values: Annotated[
        list[FilterValue], Field(min_length=1, max_length=1000), AfterValidator(_distinct)
    ]


class BillableMetricInput(CatalogInput):
    """Lago's BillableMetricBaseInput."""

    name: Name | None = None
    code: Identifier | None = None
    description: Text | None = None
    aggregation_type: AggregationType | None = None
    field_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    recurring: bool | None = None
    rounding_function: RoundingFunction | None = None
    rounding_precision: Annotated[int, Field(ge=0, le=15)] | None = None
    weighted_interval: Literal["seconds"] | None = None
    expression: str | None = None
    filters: Annotated[list[MetricFilterInput], Field(max_length=100)] | None = None


class BillableMetricCreateInput(BillableMetricInput):
    name: Name
    code: Identifier
    aggregation_type: AggregationType


NULLABLE = frozenset({"description", "field_name", "rounding_function", "rounding_precision"})
DEFINITION = frozenset({"code", "aggregation_type", "field_name", "recurring", "filters"})
"""What a metric's aggregates were built on: kept while plans charge for it."""


def _checked(metric: BillableMetric) -> BillableMetric:
    """Lago's rules between fields, on the metric as it would be saved."""
    errors: dict[str, object] = {}
    kind = metric.aggregation_type
    if kind != "count_agg" and not metric.field_name:
        errors["field_name"] = ["value_is_mandatory"]
    if metric.recurring and kind not in RECURRING_AGGREGATIONS:
        errors["recurring"] = ["not_compatible_with_aggregation_type"]
    keys = [item.key for item in metric.filters]
    if len(set(keys)) != len(keys):
        errors["filters"] = ["value_is_duplicated"]
    if errors:
        raise ValidationFailed(errors)
    if kind == "count_agg":
        metric = metric.model_copy(update={"field_name": None})
    return metric


def _refuse_expressions(given: BillableMetricInput) -> None:
    if given.expression:
        raise ValidationFailed({"expression": ["not_supported"]})


def get_metric(deps: Dependencies, organization_id: str, code: str) -> BillableMetric:
    metric = deps.store.usage.get_metric(organization_id, code)
    if metric is None:
        raise NotFound("billable_metric")
    return metric


def list_page(
    deps: Dependencies, organization_id: str, page: int, per_page: int
) -> tuple[list[BillableMetric], int]:
    """Page ``page`` of the live metrics, newest first, and how many there are."""
    return deps.store.usage.metric_page(organization_id, (page - 1) * per_page, per_page)


def create_metric(
    deps: Dependencies, organization_id: str, given: BillableMetricCreateInput
) -> BillableMetric:
    _refuse_expressions(given)
    if deps.store.usage.get_metric(organization_id, given.code) is not None:
        raise code_taken()
    metric = _checked(
        BillableMetric(
            lago_id=new_id(),
            organization_id=organization_id,
            name=given.name,
            code=given.code,
            description=given.description,
            aggregation_type=given.aggregation_type,
            field_name=given.field_name,
            recurring=bool(given.recurring),
            rounding_function=given.rounding_function,
            rounding_precision=given.rounding_precision,
            filters=[MetricFilter(key=f.key, values=f.values) for f in given.filters or []],
            created_at=iso(utcnow()),
        )
    )
    transaction = Transaction()
    deps.store.usage.stage_metric(transaction, metric, None)
    commit_claiming_code(deps, transaction, lambda: True)
    return metric


def update_metric(
    deps: Dependencies, organization_id: str, code: str, given: BillableMetricInput
) -> BillableMetric:
    _refuse_expressions(given)
    before = get_metric(deps, organization_id, code)
    updates = updates_from(given, NULLABLE)
    updates.pop("expression", None)
    updates.pop("weighted_interval", None)
    if "filters" in updates:
        updates["filters"] = [MetricFilter(key=f.key, values=f.values) for f in given.filters or []]
    if deps.store.usage.plans_using(before):
        updates = {name: value for name, value in updates.items() if name not in DEFINITION}
    after = _checked(before.model_copy(update={**updates, "version": before.version + 1}))
    renamed = after.code != before.code
    if renamed and deps.store.usage.get_metric(organization_id, after.code) is not None:
        raise code_taken()
    transaction = Transaction()
    deps.store.usage.stage_metric(transaction, after, before)
    commit_claiming_code(
        deps,
        transaction,
        (lambda: deps.store.usage.get_metric(organization_id, after.code) is not None)
        if renamed
        else None,
    )
    return after


def delete_metric(deps: Dependencies, organization_id: str, code: str) -> BillableMetric:
    before = get_metric(deps, organization_id, code)
    if deps.store.usage.plans_using(before):
        raise ValidationFailed({"billable_metric": ["attached_to_plans"]})
    after = before.model_copy(update={"deleted_at": iso(utcnow()), "version": before.version + 1})
    transaction = Transaction()
    deps.store.usage.stage_metric(transaction, after, before)
    deps.store.usage.stage_unused(transaction, before)
    deps.store.commit(transaction)
    return after
