"""The API resolver: authentication, body limits, routing and Lago-shaped errors."""

from __future__ import annotations

import base64
import importlib
import json
import re
import threading
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.api import routes
from billow.api.errors import error_response, validation_response
from billow.api.json_nesting import nests_deeper_than
from billow.api.responses.common import ErrorBody
from billow.composition import dependencies
from billow.domain.errors import (
    ConcurrentUpdate,
    NotAllowed,
    NotFound,
    ProviderError,
    ValidationFailed,
    provider_rejection,
)
from billow.services.api_keys import organization_for_api_key

MAX_BODY_BYTES = 1_048_576
API_PREFIX = routes.API_PREFIX

logger = Logger(service="billow")


class _Resolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver, with path parameters that take any character but
    ``/``. API Gateway hands Billow the path percent-decoded (``rawPath``), and Powertools
    would match a ``<parameter>`` only against word characters and some punctuation: an
    id with a quote, a symbol or an emoji found no route. Every id Billow accepts (see
    ``billow.domain.identifiers``) must reach its route, decoded."""

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}$") -> re.Pattern[str]:
        return re.compile(base_regex.format(re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", rule)))


app = _Resolver(enable_validation=True)

_included: set[str] = set()
_including = threading.Lock()


def include_routes(modules: Iterable[str]) -> None:
    """Import route modules (``billow.api.routes``) and add their routes to ``app``, each
    once per process: the API loads only the modules its requests need (cold starts).

    Powertools takes routes added after requests were resolved: it matches each request
    against its route lists as they are then (static routes first, then dynamic ones,
    rebuilt per request, nothing cached), and builds a route's validation on the route's
    first call. The lock keeps two threads (one serving a request, one writing the
    OpenAPI document) from registering a module twice; a module counts as included only
    once its routes are all in."""
    missing = [name for name in modules if name not in _included]
    if not missing:
        return
    with _including:
        for name in missing:
            if name not in _included:
                module = importlib.import_module(f"{routes.__name__}.{name}")
                app.include_router(module.router)
                _included.add(name)


@app.get(
    "/checkout/completed",
    responses={
        200: {
            "description": "A page telling the customer the payment method is saved.",
            "content": {content_types.TEXT_HTML: {"schema": {"type": "string"}}},
        }
    },
)
def checkout_completed() -> Response[str]:
    """Where Stripe Checkout sends the customer back when no success URL was configured."""
    return Response(
        200,
        content_types.TEXT_HTML,
        "<!doctype html><title>Payment method saved</title>"
        "<p>Your payment method is saved. You can close this page.</p>",
    )


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[str]:
    return validation_response(error.errors())


@app.exception_handler(NotFound)
def not_found(error: NotFound) -> Response[str]:
    return error_response(404, error.code)


@app.exception_handler(ValidationFailed)
def unprocessable(error: ValidationFailed) -> Response[str]:
    return error_response(422, error.code, error.details)


@app.exception_handler(NotAllowed)
def not_allowed(error: NotAllowed) -> Response[str]:
    """Lago's 405: the object's state forbids the action; the body carries only the code."""
    return error_response(405, error.code)


@app.exception_handler(ProviderError)
def provider_failed(error: ProviderError) -> Response[str]:
    """Stripe unavailable is a 503, worth retrying; Stripe refusing (a revoked key, an
    object it no longer has) is Lago's third-party 422, with Stripe's own words."""
    logger.warning(
        "Stripe call failed", extra={"kind": error.kind, "stripe_message": error.message}
    )
    if not error.retryable:
        refused = provider_rejection(error, "payment_provider")
        return error_response(422, refused.code, refused.details)
    return error_response(503, "provider_unavailable", {"payment_provider": [error.kind]})


@app.exception_handler(ConcurrentUpdate)
def conflict(error: ConcurrentUpdate) -> Response[str]:
    return error_response(503, "concurrent_update")


@app.not_found
def route_not_found(_: Exception) -> Response[str]:
    return error_response(404, "route_not_found")


ERRORS_OF_EVERY_CALL = {
    400: "The body is not JSON (or not UTF-8, or nested too deeply), or lacks its root object.",
    401: "No API key, or one Billow does not know.",
    404: "No such object for this organization, or no such route.",
    413: "The body is larger than 1 MiB.",
    415: "The body is not JSON.",
    422: "Invalid input (``error_details`` names each field and why), or Stripe refused.",
    503: "Stripe is unavailable, or the object changed meanwhile: retrying is safe.",
}
"""Lago-shaped errors any /api/v1 call may answer (see the handlers above and ``handle``)."""

STATE_ERRORS = {
    "/api/v1/invoices/{lago_id}/void",
    "/api/v1/invoices/{lago_id}/retry_payment",
    "/api/v1/invoices/{lago_id}/payment_url",
}
"""Calls that also answer 405 when the invoice's state forbids the action (``NotAllowed``)."""

_POWERTOOLS_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Describe Billow's error responses in Lago's shape. Powertools documents only a 422
    in FastAPI's shape, which Billow never serves (``invalid_request`` answers instead)."""
    schemas = document["components"]["schemas"]
    for name in _POWERTOOLS_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            responses.pop("422", None)
            if not path.startswith("/api/v1/"):
                continue
            statuses = dict(ERRORS_OF_EVERY_CALL)
            if path in STATE_ERRORS:
                statuses[405] = "The invoice's state forbids the action, or a payment is in flight."
            for status, description in sorted(statuses.items()):
                responses[str(status)] = {"description": description, "content": error}
    return document


def _in_module_order(paths: dict[str, Any]) -> dict[str, Any]:
    """The document's paths in one order, whatever order requests loaded the modules in.

    Powertools lists paths as their routes were registered, those with parameters first;
    a module's routes register together, in the module's order. Sorting on (parameters,
    module) puts the modules' blocks in ``routes.MODULES`` order, and the routes of the
    API itself (``/checkout/completed``) after them."""

    def rank(path: str) -> tuple[bool, int]:
        module = routes.module_for(path)
        position = len(routes.MODULES) if module is None else routes.MODULES.index(module)
        return "{" not in path, position

    return {path: paths[path] for path in sorted(paths, key=rank)}


def openapi_document() -> str:
    """The API's OpenAPI document, generated from every route and their pydantic models.

    Powertools' OpenAPI models are imported here, not at the top: building their hundred
    pydantic classes is about 100 ms that no request needs, only the document."""
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer  # noqa: PLC0415

    include_routes(routes.MODULES)
    generated = app.get_openapi_json_schema(
        title="Billow",
        version="1.0.0",
        description="Lago-compatible billing API on AWS Lambda, billing with Stripe.",
        security_schemes={"bearerAuth": HTTPBearer()},
        security=[{"bearerAuth": []}],
    )
    document = json.loads(generated)
    document["paths"] = _in_module_order(document["paths"])
    return json.dumps(_document_errors(document), indent=2)


def _bearer(event: APIGatewayProxyEventV2) -> str | None:
    header = event.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _reply(response: Response[str]) -> dict[str, Any]:
    """A response given before routing (the resolver only serializes routed ones)."""
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": response.body,
        "isBase64Encoded": False,
    }


def _raw_body(request: APIGatewayProxyEventV2) -> bytes:
    """The body as sent: API Gateway base64-encodes what is not valid text."""
    raw = request.body or ""
    return base64.b64decode(raw) if request.is_base64_encoded else raw.encode()


def _is_json(media_type: str) -> bool:
    """``application/json`` or a structured ``+json`` type such as ``application/vnd.api+json``.

    Parameters are ignored, as Rails (Lago) ignores them: JSON is UTF-8 whatever ``charset``
    says (RFC 8259), and a body that is not UTF-8 is refused on its own."""
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _with_json_content_type(event: dict[str, Any], body: bytes) -> dict[str, Any] | Response[str]:
    """The event with its ``Content-Type`` as the resolver understands it, or a 415.

    Lago's contract takes JSON bodies only. Any JSON media type, in any case and with any
    parameters, becomes plain ``application/json``; a request without the header is read
    as JSON too. Another media type is refused when a body comes with it (forms and
    multipart included, with or without a boundary), and forgotten when there is no body:
    a body-less ``POST …/void`` describes nothing with it."""
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    declared = headers.pop("content-type", None)
    if declared is None:
        return event
    media_type = declared.split(";", 1)[0].strip().lower()
    if _is_json(media_type):
        headers["content-type"] = content_types.APPLICATION_JSON
    elif body:
        return error_response(
            415, "unsupported_media_type", {"content_type": ["must_be_application_json"]}
        )
    return {**event, "headers": headers}


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Authenticate /api/v1 calls before looking at their bodies, so an unauthenticated
    caller learns nothing, not even whether its body was valid."""
    request = APIGatewayProxyEventV2(event)
    body = _raw_body(request)
    if len(body) > MAX_BODY_BYTES:
        return _reply(error_response(413, "payload_too_large"))
    organization_id = None
    if request.raw_path.startswith(API_PREFIX):
        token = _bearer(request)
        organization_id = organization_for_api_key(dependencies(), token) if token else None
        if organization_id is None:
            return _reply(error_response(401))
    routed = _with_json_content_type(event, body)
    if isinstance(routed, Response):
        return _reply(routed)
    try:
        body.decode()
    except UnicodeDecodeError:
        return _reply(error_response(400, "bad_request", {"body": ["invalid_utf8"]}))
    if nests_deeper_than(body):
        return _reply(error_response(400, "bad_request", {"body": ["too_deeply_nested"]}))
    if organization_id is not None:
        app.append_context(organization_id=organization_id)
    module = routes.module_for(request.path)
    if module is not None:
        include_routes([module])
    return app.resolve(routed, context)
