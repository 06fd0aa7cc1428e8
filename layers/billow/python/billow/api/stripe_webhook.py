"""The Stripe webhook intake: POST /webhooks/stripe/{organization_id}?code=…

Answers 400 to anything forged, stale or malformed (changing nothing) and 200 to every
genuine event, new or redelivered, as soon as it is stored.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.api.json_nesting import nests_deeper_than
from billow.composition import dependencies
from billow.services.stripe_event_intake import RejectedDelivery, receive

logger = Logger(service="billow")
app = APIGatewayHttpResolver()


def _json(status: int, body: dict[str, Any]) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body))


def _invalid() -> Response[str]:
    return _json(400, {"status": 400, "error": "Bad Request", "code": "invalid_webhook"})


@app.post("/webhooks/stripe/<organization_id>")
def stripe_webhook(organization_id: str) -> Response[str]:
    event = app.current_event
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    received_at = datetime.fromtimestamp(event.request_context.time_epoch / 1000, UTC)
    if nests_deeper_than(body):
        # Stripe's events nest a dozen levels at most; this could only break the parser.
        logger.warning("Stripe delivery rejected", extra={"reason": "too deeply nested"})
        return _invalid()
    try:
        outcome = receive(
            dependencies(),
            organization_id,
            event.get_query_string_value("code") or "stripe",
            body,
            event.headers.get("stripe-signature"),
            received_at,
        )
    except RejectedDelivery as error:
        logger.warning("Stripe delivery rejected", extra={"reason": str(error)})
        return _invalid()
    logger.info("Stripe delivery accepted", extra={"outcome": outcome})
    return _json(200, {"received": True, "outcome": outcome})


@app.not_found
def route_not_found(_: Exception) -> Response[str]:
    return _json(404, {"status": 404, "error": "Not Found", "code": "route_not_found"})


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
