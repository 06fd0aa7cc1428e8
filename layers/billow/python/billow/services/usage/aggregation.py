"""Folding stored events into their charges' aggregates: the table stream's consumer.

The stream reports an event's first write only (an INSERT; a retried write is a MODIFY
the consumer's filter drops), so each event reaches this fold once per delivery, and
Lambda may deliver a batch again after a failure or a crash. Each chunk of a batch is
folded in one transaction with a receipt keyed by the stream record that starts it; a
batch delivered again skips the chunks whose receipts exist. So every event is folded
exactly once.

A chunk reads the aggregates it changes and writes them back with a condition on their
version: two chunks that fold into the same aggregate at once (events of one busy
subscription spread over several stream shards) cannot lose each other's events, the
later one folds again on a fresh read. Each aggregate is written once per chunk, not
once per event, which is what keeps a subscription sending thousands of events a second
far below the write rate one DynamoDB key accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from billow.adapters.table import Item, Transaction
from billow.adapters.usage_records import StoredAggregate, aggregate_key, value_key
from billow.composition import Dependencies
from billow.domain.catalog import Plan, plain
from billow.domain.clock import iso, parse_iso, stable_id
from billow.domain.events import OutboxEvent, internal_event, webhook_event
from billow.domain.subscriptions import Subscription, live_at
from billow.domain.usage import (
    AggregateState,
    BillableMetric,
    Charge,
    ChargeFilter,
    Contribution,
    UsageEvent,
    numeric,
    period_key,
)
from billow.messages import AdvanceFeeDue, ThresholdCheckRequested
from billow.services.retries import retry_on_race
from billow.services.subscription_billing import period_at, timezone_of
from billow.services.usage.fees import advance_fee
from billow.topology import ADVANCE_FEE_DUE, THRESHOLD_CHECK_REQUESTED

MAX_ITEMS_PER_CHUNK = 90
"""DynamoDB's transactions take 100 items; a chunk stops before it would need more."""


@dataclass(frozen=True)
class StreamedEvent:
    """An event as the stream delivered it: the record's id names a chunk's receipt."""

    stream_id: str
    event: UsageEvent


@dataclass
class _Target:
    """One aggregate an event folds into."""

    key: Item
    charge: Charge
    charge_filter: ChargeFilter | None
    metric: BillableMetric
    subscription: Subscription
    period: tuple[datetime, datetime]
    contribution: Contribution
    distinct_value: str | None = None
    """For ``unique_count_agg``: the value whose presence the event changes."""
    operation: str = "add"
    """Lago's ``operation_type`` property: ``remove`` takes a unique value away."""
    currency: str = ""
    """The plan's currency (a pay-in-advance charge prices each event as it folds)."""
    has_thresholds: bool = False
    """The plan bills progressively: its usage is checked against its thresholds."""

    @property
    def filter_id(self) -> str | None:
        return self.charge_filter.lago_id if self.charge_filter else None

    @property
    def value_key(self) -> Item | None:
        if self.distinct_value is None:
            return None
        scope = "LIFETIME" if self.metric.recurring else period_key(self.period[0])
        return value_key(
            self.subscription.organization_id,
            self.subscription.lago_id,
            scope,
            self.charge.lago_id,
            self.filter_id,
            self.distinct_value,
        )


@dataclass
class _Lookups:
    """What a batch reads once, whatever the number of its events."""

    deps: Dependencies
    subscriptions: dict[tuple[str, str], list[Subscription]] = field(default_factory=dict)
    metrics: dict[tuple[str, str], BillableMetric | None] = field(default_factory=dict)
    plans: dict[tuple[str, str], Plan | None] = field(default_factory=dict)
    timezones: dict[tuple[str, str], str] = field(default_factory=dict)

    def subscriptions_of(self, organization_id: str, external_id: str) -> list[Subscription]:
        key = (organization_id, external_id)
        if key not in self.subscriptions:
            self.subscriptions[key] = self.deps.store.subscriptions.list_for_external_id(
                organization_id, external_id
            )
        return self.subscriptions[key]

    def metric(self, organization_id: str, code: str) -> BillableMetric | None:
        key = (organization_id, code)
        if key not in self.metrics:
            self.metrics[key] = self.deps.store.usage.get_metric(organization_id, code)
        return self.metrics[key]

    def plan(self, organization_id: str, lago_id: str) -> Plan | None:
        key = (organization_id, lago_id)
        if key not in self.plans:
            self.plans[key] = self.deps.store.plans.get_by_id(organization_id, lago_id)
        return self.plans[key]

    def timezone(self, sub: Subscription) -> str:
        key = (sub.organization_id, sub.external_customer_id)
        if key not in self.timezones:
            organization = self.deps.store.organizations.get(sub.organization_id)
            customer = self.deps.store.customers.get(sub.organization_id, sub.external_customer_id)
            self.timezones[key] = (
                timezone_of(organization, customer) if organization and customer else "UTC"
            )
        return self.timezones[key]


def _event_error(event: UsageEvent, status: int, error: str, message: object) -> OutboxEvent:
    """Lago's ``event.error`` webhook: an event Billow stored but cannot count."""
    return webhook_event(
        event.organization_id,
        "event.error",
        "event_error",
        {"status": status, "error": error, "message": message, "event": event.as_lago()},
    )


def _targets(lookups: _Lookups, event: UsageEvent) -> tuple[list[_Target], OutboxEvent | None]:
    """The aggregates an event folds into, or the ``event.error`` it causes."""
    organization_id = event.organization_id
    generations = lookups.subscriptions_of(organization_id, event.external_subscription_id)
    if not generations:
        return [], _event_error(event, 404, "Not Found", "subscription_not_found")
    metric = lookups.metric(organization_id, event.code)
    if metric is None:
        return [], _event_error(event, 404, "Not Found", "billable_metric_not_found")
    moment = event.moment
    sub = live_at(generations, moment)
    plan = lookups.plan(organization_id, sub.plan_lago_id) if sub else None
    if sub is None or plan is None:
        return [], None  # outside the subscription's life: kept, never billed (as Lago)
    charges = [c for c in plan.charges if c.billable_metric_id == metric.lago_id]
    if not charges:
        return [], None
    value = None
    distinct: str | None = None
    raw = event.properties.get(metric.field_name or "")
    if metric.aggregation_type == "unique_count_agg":
        if raw is None:
            return [], None
        distinct = str(raw)
    elif metric.aggregation_type != "count_agg":
        if raw is None:
            return [], None
        value = numeric(raw)
        if value is None:
            message = {metric.field_name or "properties": ["value_is_not_valid_number"]}
            return [], _event_error(event, 422, "Unprocessable Entity", message)
    period = period_at(sub, plan, moment, lookups.timezone(sub))
    targets: list[_Target] = []
    for charge in charges:
        charge_filter = charge.filter_for(event.properties)
        targets.append(
            _Target(
                key=aggregate_key(
                    organization_id,
                    sub.lago_id,
                    period_key(period.start),
                    charge.lago_id,
                    charge_filter.lago_id if charge_filter else None,
                ),
                charge=charge,
                charge_filter=charge_filter,
                metric=metric,
                subscription=sub,
                period=(period.start, period.end),
                contribution=Contribution(
                    transaction_id=event.transaction_id, timestamp=event.timestamp, value=value
                ),
                distinct_value=distinct,
                operation=str(event.properties.get("operation_type") or "add"),
                currency=plan.amount_currency,
                has_thresholds=bool(sub.thresholds(plan.usage_thresholds)),
            )
        )
    return targets, None


def _keep_earliest(target: _Target) -> int:
    properties = (
        target.charge_filter.properties if target.charge_filter else target.charge.properties
    )
    if target.charge.charge_model != "percentage":
        return 0
    return int(properties.get("free_units_per_events") or 0)


class FoldInterrupted(Exception):
    """Folding stopped at ``position``: the records from there on are not folded (the
    cause is chained). A delivery that starts there again folds each of them once."""

    def __init__(self, position: int) -> None:
        super().__init__(f"folding stopped at record {position}")
        self.position = position


def fold_stream_batch(deps: Dependencies, records: Sequence[StreamedEvent]) -> None:
    """Fold a stream batch, chunk by chunk, skipping chunks a past delivery folded."""
    lookups = _Lookups(deps)
    position = 0
    while position < len(records):
        try:
            covered = deps.store.usage.receipt(records[position].stream_id)
            if covered is None:
                rest = records[position:]
                covered = retry_on_race(lambda: _fold_chunk(deps, lookups, rest))  # noqa: B023
        except Exception as error:
            raise FoldInterrupted(position) from error
        position += covered


def _fold_chunk(deps: Dependencies, lookups: _Lookups, records: Sequence[StreamedEvent]) -> int:
    """Fold the longest run of records from the start that fits one transaction."""
    planned: list[list[_Target]] = []
    errors: list[OutboxEvent] = []
    advance = 0
    keys: dict[tuple[str, str], Item] = {}
    for streamed in records:
        targets, error = _targets(lookups, streamed.event)
        wanted = dict(keys)
        for target in targets:
            for key in (target.key, target.value_key):
                if key is not None:
                    wanted[(str(key["PK"]), str(key["SK"]))] = key
        organizations = {e.organization_id for e in errors} | (
            {error.organization_id} if error else set()
        )
        # Each pay-in-advance fee is an event in the chunk's outbox item: bounded too,
        # so the item stays far below DynamoDB's 400 KB.
        advance += sum(1 for target in targets if target.charge.pay_in_advance)
        advance += sum(1 for target in targets if target.has_thresholds)
        if planned and len(wanted) + len(organizations) + advance + 1 > MAX_ITEMS_PER_CHUNK:
            break
        keys = wanted
        planned.append(targets)
        if error is not None:
            errors.append(error)
    stored = deps.store.usage.read_for_fold(list(keys.values()))
    states: dict[tuple[str, str], tuple[AggregateState, _Target, int | None]] = {}
    """Per aggregate: its state so far, the first target folded into it, the version read."""
    marks: dict[tuple[str, str], tuple[bool, str]] = {}
    fees: list[OutboxEvent] = []
    for targets in planned:
        for target in targets:
            pair = (str(target.key["PK"]), str(target.key["SK"]))
            if pair not in states:
                read = StoredAggregate(stored.get(pair))
                states[pair] = (read.state, target, read.version)
            contribution = target.contribution
            value_key_ = target.value_key
            if value_key_ is not None:
                change, marks = _distinct_change(target, value_key_, stored, marks)
                contribution = contribution.model_copy(update={"distinct_change": change})
            state, first, version = states[pair]
            folded = state.fold(contribution, target.period[1], _keep_earliest(target))
            states[pair] = (folded, first, version)
            if target.charge.pay_in_advance and target.subscription.billed_by == "billow":
                fees.append(_advance_fee_due(target, state, folded))
    transaction = Transaction()
    for state, target, version in states.values():
        deps.store.usage.stage_aggregate(
            transaction,
            target.key,
            state,
            version,
            target.charge.lago_id,
            target.filter_id,
            (period_key(target.period[0]), period_key(target.period[1])),
        )
    for pair, (present, mark) in marks.items():
        deps.store.usage.stage_value_mark(
            transaction, {"PK": pair[0], "SK": pair[1]}, present, mark, stored.get(pair)
        )
    deps.store.usage.stage_receipt(transaction, records[0].stream_id, len(planned))
    transaction.publish([*errors, *fees, *_threshold_checks(planned)])
    deps.store.commit(transaction)
    return len(planned)


def _advance_fee_due(target: _Target, before: AggregateState, after: AggregateState) -> OutboxEvent:
    """The command to invoice what the event added to a pay-in-advance charge; its id is
    the event's, so a command put on the bus twice is still one fee."""
    sub, charge = target.subscription, target.charge
    units, amount = advance_fee(
        target.metric, charge, target.charge_filter, before, after, target.period, target.currency
    )
    payload = AdvanceFeeDue(
        subscription_id=sub.lago_id,
        external_subscription_id=sub.external_id,
        charge_id=charge.lago_id,
        charge_filter_id=target.filter_id,
        transaction_id=target.contribution.transaction_id,
        period=(iso(target.period[0]), iso(target.period[1] - timedelta(seconds=1))),
        units=plain(units),
        amount_cents=amount.amount_cents,
        precise_amount=plain(amount.precise_amount),
        amount_details=amount.amount_details,
    )
    return internal_event(
        sub.organization_id,
        ADVANCE_FEE_DUE,
        payload.model_dump(),
        event_id=stable_id("advance-fee-due", sub.lago_id, charge.lago_id, payload.transaction_id),
    )


def _threshold_checks(planned: list[list[_Target]]) -> list[OutboxEvent]:
    """One check per subscription period with new usage, for plans billed progressively."""
    periods = {
        (target.subscription.lago_id, target.period[0]): target
        for targets in planned
        for target in targets
        if target.has_thresholds
        and not target.charge.pay_in_advance
        and target.subscription.billed_by == "billow"
    }
    return [
        internal_event(
            target.subscription.organization_id,
            THRESHOLD_CHECK_REQUESTED,
            ThresholdCheckRequested(
                subscription_id=target.subscription.lago_id,
                external_subscription_id=target.subscription.external_id,
                period=(iso(target.period[0]), iso(target.period[1])),
            ).model_dump(),
        )
        for target in periods.values()
    ]


def _distinct_change(
    target: _Target,
    key: Item,
    stored: dict[tuple[str, str], Item],
    marks: dict[tuple[str, str], tuple[bool, str]],
) -> tuple[int, dict[tuple[str, str], tuple[bool, str]]]:
    """How an event changes its value's presence: only an event later than the one that
    last set it counts, so removals and additions settle the same in any order."""
    pair = (str(key["PK"]), str(key["SK"]))
    item = stored.get(pair)
    current = marks.get(pair) or ((bool(item["present"]), str(item["mark"])) if item else None)
    contribution = target.contribution
    mark = f"{parse_iso(contribution.timestamp).timestamp():020.3f}#{contribution.transaction_id}"
    if current is not None and mark <= current[1]:
        return 0, marks
    was_present = current[0] if current else False
    now_present = target.operation != "remove"
    return int(now_present) - int(was_present), {**marks, pair: (now_present, mark)}
