"""Parameter parsing and listing helpers shared by the emulator's handlers.

Validation errors name the offending parameter in Stripe's bracket notation
(``line_items[0][quantity]``) because Billow maps ``param`` into its own errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from localstripe.resources import StripeObject, store

from .errors import MissingObject, StripeApiError
from .upstream import get_post_data, unflatten_data

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Routes = list[tuple[str, str, Handler]]


async def read_params(request: web.Request) -> dict[str, Any]:
    """The request's parameters, decoded by localstripe (form or JSON body, else query)."""
    if request.method == "POST":
        data = await get_post_data(request)
        return dict(data) if data else {}
    return dict(unflatten_data(request.query))


def reject_unknown(params: dict[str, Any], allowed: Collection[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            param = f"{prefix}[{name}]" if prefix else name
            raise StripeApiError(400, f"Received unknown parameter: {param}", param=param)


def require(params: dict[str, Any], name: str, param: str | None = None) -> Any:
    value = params.get(name)
    if value is None or value == "":
        param = param or name
        raise StripeApiError(400, f"Missing required param: {param}.", param=param)
    return value


def as_int(value: Any, param: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StripeApiError(400, f"Invalid integer: {value}", param=param) from None
    if number < minimum:
        raise StripeApiError(
            400, f"Invalid {param}: must be greater than or equal to {minimum}", param=param
        )
    return number


def as_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise StripeApiError(400, f"Invalid boolean: {value}", param=param)


def as_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StripeApiError(400, f"Invalid object: {param} must be a hash", param=param)
    return value


def as_str_list(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StripeApiError(400, f"Invalid array: {param} must be a list of strings", param=param)
    return value


def as_url(value: Any, param: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise StripeApiError(400, f"Invalid URL: {value}", param=param)
    return str(value)


def updated_metadata(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value deletes a key, '' clears all."""
    if update == "":
        return {}
    merged = {**current, **as_dict(update, "metadata")}
    return {key: str(value) for key, value in merged.items() if value != ""}


def newest_first(listing: Any, keep: Callable[[Any], bool] | None = None) -> Any:
    """Reorder a localstripe List newest first (as Stripe lists), keeping only what
    ``keep`` accepts if given.

    localstripe pages (``limit``, ``starting_after``) lazily at export, so paging
    applies to the filtered order.
    """
    listing._list = [obj for obj in reversed(listing._list) if keep is None or keep(obj)]
    return listing


def all_of(cls: Any, url: str, params: dict[str, Any]) -> Any:
    """Every stored ``cls`` object as a List paged by ``params`` (localstripe's base listing)."""
    return StripeObject._api_list_all.__func__(
        cls, url, limit=params.get("limit"), starting_after=params.get("starting_after")
    )


def find(cls: Any, object_id: Any, param: str = "id") -> Any:
    """The account's ``cls`` object, else Stripe's "No such …" naming ``param``."""
    found = store.get(f"{cls.object}:{object_id}")
    if found is None:
        raise MissingObject(cls.object, str(object_id), param=param)
    return found


def apply_changes(obj: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """Set what changed on ``obj``; returns the earlier values of what did (Stripe's
    ``previous_attributes``), empty when nothing changed."""
    previous = {
        name: getattr(obj, name) for name, value in changes.items() if getattr(obj, name) != value
    }
    for name, value in changes.items():
        setattr(obj, name, value)
    return previous
