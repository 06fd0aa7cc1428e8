"""Billow's Stripe connection: /api/v1/integrations/stripe. Lago connects Stripe in its UI;
Billow offers it as an API resource shaped like Lago's."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.responses.integrations import (
    StripeIntegrationList,
    StripeIntegrationResponse,
    StripeResyncResponse,
)
from billow.services import stripe_connection
from billow.services.stripe_sync import resync

router = Router()


class StripeIntegrationInput(BaseModel):
    integration: stripe_connection.ConnectStripe


@router.post("/api/v1/integrations/stripe")
def connect_stripe(body: Annotated[StripeIntegrationInput, Body()]) -> StripeIntegrationResponse:
    connection = stripe_connection.connect(deps(), organization_id(router), body.integration)
    return StripeIntegrationResponse.model_validate({"integration": connection.as_lago()})


@router.get("/api/v1/integrations/stripe")
def list_stripe_connections() -> StripeIntegrationList:
    connections = stripe_connection.list_connections(deps(), organization_id(router))
    return StripeIntegrationList.model_validate(
        {"integrations": [connection.as_lago() for connection in connections]}
    )


@router.delete("/api/v1/integrations/stripe/<code>")
def disconnect_stripe(code: str) -> StripeIntegrationResponse:
    connection = stripe_connection.disconnect(deps(), organization_id(router), code)
    return StripeIntegrationResponse.model_validate({"integration": connection.as_lago()})


@router.post("/api/v1/integrations/stripe/<code>/resync")
def resync_stripe(code: str) -> StripeResyncResponse:
    """Billow's own route: ask again for every catalog object whose sync failed."""
    count = resync.resync_failed(deps(), organization_id(router), code)
    return StripeResyncResponse.model_validate({"resync": {"requested_count": count}})
