"""A plan's usage charges as Lago's plan requests give them, checked against the metrics
they price. A plan update sends the whole list: charges named by ``id`` keep their id
(and so the usage already aggregated for them), the others are new.

Not offered, and refused with a 422 rather than billed wrongly: fees kept off invoices
(``invoiceable: false``) and prorated charges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.charge_models import parse_properties, properties_as_lago
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.identifiers import Identifier, IdentifierList
from billow.domain.money import MAX_CENTS, Cents
from billow.domain.usage import (
    EARLIEST_VALUES_KEPT,
    BillableMetric,
    Charge,
    ChargeFilter,
    ChargeModelName,
    UsageThreshold,
)
from billow.services.catalog_writes import CatalogInput
from billow.services.lookups import require_taxes

DisplayName = Annotated[str, Field(max_length=255)]


class ChargeFilterInput(CatalogInput):
    invoice_display_name: DisplayName | None = None
    properties: dict[str, Any] | None = None
    values: Annotated[dict[str, list[str]], Field(min_length=1)]


class ChargeChanges(CatalogInput):
    """Lago's ChargeUpdateInput: what a ``PUT /plans/{code}/charges/{charge_code}`` sends."""

    billable_metric_id: str | None = None
    code: Identifier | None = None
    charge_model: ChargeModelName | None = None
    invoice_display_name: DisplayName | None = None
    pay_in_advance: bool | None = None
    invoiceable: bool | None = None
    prorated: bool | None = None
    min_amount_cents: Cents | None = None
    properties: dict[str, Any] | None = None
    filters: Annotated[list[ChargeFilterInput], Field(max_length=100)] | None = None
    tax_codes: IdentifierList | None = None


class ChargeInput(ChargeChanges):
    """One of Lago's ``plan.charges`` (a whole charge: its metric and model named)."""

    id: str | None = None
    billable_metric_id: str
    charge_model: ChargeModelName


ChargeInputs = Annotated[list[ChargeInput], Field(max_length=100)]


class UsageThresholdInput(CatalogInput):
    """Lago's UsageThresholdInput."""

    threshold_display_name: DisplayName | None = None
    amount_cents: Annotated[int, Field(gt=0, le=MAX_CENTS)]
    recurring: bool | None = None


UsageThresholdInputs = Annotated[list[UsageThresholdInput], Field(max_length=20)]


def build_thresholds(
    given: Sequence[UsageThresholdInput], before: Sequence[UsageThreshold]
) -> list[UsageThreshold]:
    """Lago's rules: at most one recurring threshold, and no two fixed ones at the same
    amount. A threshold the plan already had (same amount and kind) keeps its id."""
    if sum(1 for item in given if item.recurring) > 1:
        raise ValidationFailed({"usage_thresholds": ["multiple_recurring_thresholds"]})
    amounts = [item.amount_cents for item in given if not item.recurring]
    if len(set(amounts)) != len(amounts):
        raise ValidationFailed({"usage_thresholds": ["duplicated_amount_cents"]})
    kept = {(t.amount_cents, t.recurring): t for t in before}
    now = iso(utcnow())
    return [
        UsageThreshold(
            lago_id=previous.lago_id if previous else new_id(),
            threshold_display_name=item.threshold_display_name,
            amount_cents=item.amount_cents,
            recurring=bool(item.recurring),
            created_at=previous.created_at if previous else now,
        )
        for item in given
        for previous in [kept.get((item.amount_cents, bool(item.recurring)))]
    ]


def _properties(model: ChargeModelName, raw: dict[str, Any] | None) -> dict[str, Any]:
    parsed = parse_properties(model, raw or {})
    free_events = getattr(parsed, "free_units_per_events", None)
    if free_events is not None and free_events > EARLIEST_VALUES_KEPT:
        raise ValidationFailed({"free_units_per_events": ["value_is_out_of_range"]})
    return properties_as_lago(parsed)


def _filter(
    metric: BillableMetric, given: ChargeFilterInput, model: ChargeModelName
) -> ChargeFilter:
    allowed = {item.key: set(item.values) for item in metric.filters}
    for key, values in given.values.items():
        if key not in allowed or not values or not set(values) <= allowed[key]:
            raise ValidationFailed({"filters": ["invalid_filter_values"]})
    return ChargeFilter(
        lago_id=new_id(),
        invoice_display_name=given.invoice_display_name,
        properties=_properties(model, given.properties),
        values=given.values,
    )


PAY_IN_ADVANCE_AGGREGATIONS = frozenset({"count_agg", "sum_agg", "unique_count_agg"})


def _check_pay_in_advance(item: ChargeInput, metric: BillableMetric) -> None:
    """Lago's rules: each event is priced as it comes, so the charge's model must price
    one event's part (not ``volume``), its metric must add up events (count, sum, unique
    count), and it has no minimum spend. Billow also leaves out recurring metrics."""
    errors: dict[str, object] = {}
    if item.charge_model == "volume":
        errors["charge_model"] = ["invalid_pay_in_advance_charge_model"]
    if metric.aggregation_type not in PAY_IN_ADVANCE_AGGREGATIONS:
        errors["billable_metric"] = ["invalid_aggregation_type_for_pay_in_advance"]
    if metric.recurring:
        errors["billable_metric"] = ["recurring_not_supported_for_pay_in_advance"]
    if item.min_amount_cents:
        errors["min_amount_cents"] = ["not_compatible_with_pay_in_advance"]
    if errors:
        raise ValidationFailed(errors)


def _signature(values: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((key, tuple(sorted(items))) for key, items in values.items()))


def build_charges(
    deps: Dependencies,
    organization_id: str,
    given: Sequence[ChargeInput],
    before: Sequence[Charge],
) -> list[Charge]:
    """The plan's charges as they will be saved, or a 404/422 naming what is wrong."""
    kept = {charge.lago_id: charge for charge in before}
    metrics = deps.store.usage.get_metrics_by_id(
        organization_id, [item.billable_metric_id for item in given]
    )
    codes = [item.code for item in given if item.code]
    if len(set(codes)) != len(codes):
        raise ValidationFailed({"code": ["value_already_exist"]})
    charges: list[Charge] = []
    for item in given:
        metric = metrics.get(item.billable_metric_id)
        if metric is None or metric.deleted_at is not None:
            raise NotFound("billable_metric")
        if item.pay_in_advance:
            _check_pay_in_advance(item, metric)
        if item.invoiceable is False:
            # Lago keeps such fees off invoices (a fee and ``fee.created`` alone); Billow
            # charges every fee through an invoice, so it offers invoiceable ones only.
            raise ValidationFailed({"invoiceable": ["not_supported"]})
        if item.prorated:
            raise ValidationFailed({"prorated": ["not_supported"]})
        taxes = require_taxes(deps, organization_id, item.tax_codes)
        previous = kept.get(item.id or "")
        filters = [_filter(metric, f, item.charge_model) for f in item.filters or []]
        if previous is not None:
            # A filter that prices the same values keeps its id, and so its aggregates.
            ids = {_signature(f.values): f.lago_id for f in previous.filters}
            filters = [
                f.model_copy(update={"lago_id": ids.get(_signature(f.values), f.lago_id)})
                for f in filters
            ]
        charges.append(
            Charge(
                lago_id=previous.lago_id if previous else new_id(),
                billable_metric_id=metric.lago_id,
                billable_metric_code=metric.code,
                code=item.code,
                invoice_display_name=item.invoice_display_name,
                charge_model=item.charge_model,
                pay_in_advance=bool(item.pay_in_advance),
                min_amount_cents=item.min_amount_cents or 0,
                properties=_properties(item.charge_model, item.properties),
                filters=filters,
                tax_codes=[tax.code for tax in taxes],
                created_at=previous.created_at if previous else iso(utcnow()),
            )
        )
    return charges


def stage_metric_uses(
    deps: Dependencies,
    transaction: Transaction,
    organization_id: str,
    before: Sequence[Charge],
    after: Sequence[Charge],
) -> None:
    """Count the plan among each metric's users (a metric in use keeps its definition)."""
    was = {charge.billable_metric_id for charge in before}
    now = {charge.billable_metric_id for charge in after}
    deps.store.usage.stage_plan_uses(
        transaction, organization_id, {m: 1 if m in now else -1 for m in was ^ now}
    )
