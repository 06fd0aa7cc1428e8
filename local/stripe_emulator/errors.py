"""Stripe's JSON error envelope, for errors raised by the emulator and by localstripe."""

from __future__ import annotations

import json
from collections.abc import Collection
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


# How Stripe names an object type in "No such ...", where it differs from ``object``.
_NOUNS = {
    "payment_method": "PaymentMethod",
    "setup_intent": "setupintent",
    "tax_rate": "tax rate",
    "webhook_endpoint": "webhook endpoint",
}


class MissingObject(StripeApiError):
    """Stripe's ``resource_missing``: the object does not exist in the caller's account.

    Named in the URL it is a 404 (``param: id``); named by a request parameter it is
    that parameter's fault, a 400 naming it (see ``blame_parameter``).
    """

    def __init__(self, kind: str, object_id: str, param: str = "id") -> None:
        super().__init__(
            404 if param == "id" else 400,
            f"No such {_NOUNS.get(kind, kind)}: '{object_id}'",
            code="resource_missing",
            param=param,
            doc_url="https://stripe.com/docs/error-codes/resource-missing",
        )
        self.kind = kind
        self.object_id = object_id
        self.param = param


def blame_parameter(
    error: MissingObject, params: dict[str, Any], path_ids: Collection[str]
) -> MissingObject:
    """The error as Stripe gives it when a lookup deep inside localstripe (which knows
    nothing of parameters) missed an object a request parameter named: 400 with the
    parameter in Stripe's bracket notation (``items[0][plan]``)."""
    if error.param != "id" or error.object_id in path_ids:
        return error
    param = _naming(params, error.object_id)
    return error if param is None else MissingObject(error.kind, error.object_id, param)


def _naming(value: Any, object_id: str, path: str = "") -> str | None:
    """The parameter path holding ``object_id``, metadata aside."""
    if isinstance(value, dict):
        items: Any = ((k, v) for k, v in value.items() if k != "metadata")
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return path if value == object_id and path else None
    for key, item in items:
        found = _naming(item, object_id, f"{path}[{key}]" if path else str(key))
        if found is not None:
            return found
    return None


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
