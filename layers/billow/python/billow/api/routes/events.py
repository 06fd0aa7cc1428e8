"""Lago usage events: /api/v1/events."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.responses.usage import EventResponse, EventsResponse
from billow.domain.clock import utcnow
from billow.services.usage import events as service

router = Router()


class EventBody(BaseModel):
    event: service.EventInput


class EventBatchBody(BaseModel):
    events: list[service.EventInput]


@router.post("/api/v1/events")
def create_event(body: Annotated[EventBody, Body()]) -> EventResponse:
    event = service.receive_event(deps(), organization_id(router), body.event, utcnow())
    return EventResponse.model_validate({"event": event.as_lago()})


@router.post("/api/v1/events/batch")
def create_events(body: Annotated[EventBatchBody, Body()]) -> EventsResponse:
    events = service.receive_batch(deps(), organization_id(router), body.events, utcnow())
    return EventsResponse.model_validate({"events": [event.as_lago() for event in events]})


@router.get("/api/v1/events/<transaction_id>")
def get_event(transaction_id: str) -> EventResponse:
    return EventResponse.model_validate(
        {"event": service.find_event(deps(), organization_id(router), transaction_id)}
    )
