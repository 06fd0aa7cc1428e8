"""Receiving usage events (Lago's ``POST /events`` and ``/events/batch``).

An event is stored once per (organization, external subscription, transaction id) and
counted once: the aggregator folds only an event's first write (an INSERT on the table's
stream), so retries, overlapping requests and a crash half-way through a batch never
count one twice. An event sent again exactly as stored is a retry and is answered as
stored; another event reusing a transaction id is Lago's 422 ``value_already_exist``.

Events are accepted whatever their code and subscription (Lago checks those later, and
reports what it cannot match with an ``event.error`` webhook): the aggregator matches
them, so a request costs one read and one write per event, never a lookup of the catalog.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictFloat, StrictInt, StrictStr

from billow.composition import Dependencies
from billow.domain.clock import new_id
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.subscriptions import live_at
from billow.domain.usage import UsageEvent, iso_ms, numeric, parse_timestamp
from billow.services.catalog_writes import CatalogInput

MAX_BATCH = 100
Key = Annotated[str, Field(min_length=1, max_length=255)]
PropertyValue = StrictStr | StrictInt | StrictFloat | None


class EventInput(CatalogInput):
    """Lago's EventInputObject."""

    transaction_id: Key
    external_subscription_id: Key
    code: Key
    timestamp: StrictInt | StrictFloat | StrictStr | None = None
    properties: Annotated[dict[str, PropertyValue], Field(max_length=100)] | None = None
    precise_total_amount_cents: StrictStr | StrictInt | StrictFloat | None = None


def _event(organization_id: str, given: EventInput, now: datetime) -> UsageEvent:
    errors: dict[str, object] = {}
    moment = now
    if given.timestamp is not None:
        try:
            moment = parse_timestamp(given.timestamp)
        except ValueError:
            errors["timestamp"] = ["invalid_format"]
    amount = given.precise_total_amount_cents
    if amount is not None and numeric(amount) is None:
        errors["precise_total_amount_cents"] = ["value_is_invalid"]
    if errors:
        raise ValidationFailed(errors)
    return UsageEvent(
        lago_id=new_id(),
        organization_id=organization_id,
        transaction_id=given.transaction_id,
        external_subscription_id=given.external_subscription_id,
        code=given.code,
        timestamp=iso_ms(moment),
        properties=dict(given.properties or {}),
        precise_total_amount_cents=str(numeric(amount)) if amount is not None else None,
        created_at=iso_ms(now),
    )


def receive_event(
    deps: Dependencies, organization_id: str, given: EventInput, now: datetime
) -> UsageEvent:
    event = _event(organization_id, given, now)
    if deps.store.usage.put_event_once(event):
        return event
    stored = deps.store.usage.get_events(
        organization_id, [(event.transaction_id, event.external_subscription_id)]
    )
    if stored and stored[0].same_as(event):
        return stored[0]
    raise ValidationFailed({"transaction_id": ["value_already_exist"]})


def receive_batch(
    deps: Dependencies, organization_id: str, given: list[EventInput], now: datetime
) -> list[UsageEvent]:
    """All of the batch or none of it: every refusal is reported, keyed by the event's
    index, before anything is stored."""
    if not given:
        raise ValidationFailed({"events": ["value_is_mandatory"]})
    if len(given) > MAX_BATCH:
        raise ValidationFailed({"events": ["too_many_events"]})
    errors: dict[str, object] = {}
    events: list[UsageEvent] = []
    for index, item in enumerate(given):
        try:
            events.append(_event(organization_id, item, now))
        except ValidationFailed as refusal:
            errors[str(index)] = refusal.details
    if errors:
        raise ValidationFailed(errors)
    stored = {
        (event.transaction_id, event.external_subscription_id): event
        for event in deps.store.usage.get_events(
            organization_id,
            [(event.transaction_id, event.external_subscription_id) for event in events],
        )
    }
    answered: list[UsageEvent] = []
    fresh: list[UsageEvent] = []
    for index, event in enumerate(events):
        key = (event.transaction_id, event.external_subscription_id)
        earlier = stored.get(key)
        if earlier is not None and not earlier.same_as(event):
            errors[str(index)] = {"transaction_id": ["value_already_exist"]}
            continue
        if earlier is None:
            stored[key] = event
            fresh.append(event)
        answered.append(stored[key])
    if errors:
        raise ValidationFailed(errors)
    deps.store.usage.put_events(fresh)
    return answered


def find_event(deps: Dependencies, organization_id: str, transaction_id: str) -> dict[str, Any]:
    """Lago's EventObject, with the subscription the event was counted for."""
    event = deps.store.usage.find_event(organization_id, transaction_id)
    if event is None:
        raise NotFound("event")
    owner = live_at(
        deps.store.subscriptions.list_for_external_id(
            organization_id, event.external_subscription_id
        ),
        event.moment,
    )
    return event.as_lago(owner.lago_id if owner else None)
