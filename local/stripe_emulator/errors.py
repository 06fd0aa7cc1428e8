"""Stripe's JSON error envelope, for errors raised by the emulator and by localstripe."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from localstripe.errors import UserError


class StripeApiError(UserError):
    """An API error with the fields real Stripe puts in its body (type, code, param, ...).

    It subclasses localstripe's UserError so localstripe code that lets UserError
    propagate treats both alike.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, message)
        self.message = message
        self.body["error"] = {"type": type, "message": message, **extra}
        if code is not None:
            self.body["error"]["code"] = code
        if param is not None:
            self.body["error"]["param"] = param


def missing_object(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    """Stripe's answer for a reference to an object that does not exist."""
    return StripeApiError(
        404 if param == "id" else 400,
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def json_response(payload: Any, status: int = 200) -> web.Response:
    """JSON the way Stripe prints it (two-space indent)."""
    return web.json_response(payload, status=status, dumps=lambda obj: json.dumps(obj, indent=2))


def error_response(error: UserError) -> web.Response:
    """Turn a localstripe or emulator error into Stripe's error body.

    localstripe labels every error ``invalid_request_error`` and words unknown
    parameters as "Unexpected x"; Stripe says ``card_error`` for 402s and names the
    parameter, which the SDK exposes as ``param``.
    """
    body = dict(error.body["error"])
    if not isinstance(error, StripeApiError):
        message = body.get("message", "")
        if error.code == 402:
            body["type"] = "card_error"
        if message.startswith("Unexpected "):
            param = message.removeprefix("Unexpected ").split(", ")[0]
            body.update(message=f"Received unknown parameter: {param}", param=param)
        if error.code == 404:
            body.setdefault("code", "resource_missing")
    return json_response({"error": body}, status=error.code)
