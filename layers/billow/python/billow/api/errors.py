"""Lago's error shape: ``{status, error, code, error_details}``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# pydantic error types → Lago's error codes
_CODES = {
    "missing": "value_is_mandatory",
    "string_too_long": "value_is_too_long",
    "too_long": "too_many_values",
    "string_too_short": "value_is_mandatory",
    "greater_than_equal": "value_is_out_of_range",
    "less_than_equal": "value_is_out_of_range",
    "greater_than": "value_is_out_of_range",
    "less_than": "value_is_out_of_range",
}


def error_response(status: int, code: str | None = None, details: Any = None) -> Response[str]:
    body: dict[str, Any] = {"status": status, "error": _TITLES.get(status, "Error")}
    if code is not None:
        body["code"] = code
    if details is not None:
        body["error_details"] = details
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body))


def _code(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "value_error":
        # our own validators raise ValueError("<lago code>")
        return str(error.get("msg", "")).removeprefix("Value error, ")
    if kind in _CODES:
        return _CODES[kind]
    if kind.endswith("_type") or kind in {"model_attributes_type", "dict_type"}:
        return "invalid_type"
    return "value_is_invalid"


# The root object of each request body, as in ``{"customer": {...}}``.
BODY_WRAPPERS = frozenset(
    {
        "customer",
        "webhook_endpoint",
        "integration",
        "tax",
        "plan",
        "add_on",
        "coupon",
        "applied_coupon",
        "subscription",
        "invoice",
        "organization",
    }
)


def validation_response(errors: Sequence[Any]) -> Response[str]:
    """Turn Powertools/pydantic errors into Lago's 400 (unreadable body or missing root
    object, as Lago answers "param is missing") or 422 (per field)."""
    details: dict[str, list[str]] = {}
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid" or location == ["body"]:
            return error_response(400, "bad_request", {"body": ["invalid_json"]})
        if len(location) == 2 and location[0] == "body" and location[1] in BODY_WRAPPERS:
            return error_response(400, "bad_request", {location[1]: [_code(error)]})
        source, *rest = location or ["body"]
        if source == "body" and rest and rest[0] in BODY_WRAPPERS:
            rest = rest[1:]
        field = ".".join(rest) or source
        details.setdefault(field, [])
        if _code(error) not in details[field]:
            details[field].append(_code(error))
    return error_response(422, "validation_errors", details)
