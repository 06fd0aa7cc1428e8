"""Make localstripe's JSON look like current Stripe's before anyone sees it."""

from __future__ import annotations

from typing import Any

# Fields Stripe always returns as JSON booleans; localstripe stores whatever string a
# form-encoded request sent ("false" for an archived product, for example).
_BOOLEAN_FIELDS = frozenset(
    {
        "active",
        "attempted",
        "auto_advance",
        "cancel_at_period_end",
        "captured",
        "deleted",
        "delinquent",
        "disputed",
        "enabled",
        "has_more",
        "livemode",
        "paid",
        "refunded",
        "shippable",
        "supported",
        "valid",
    }
)


def normalise(value: Any, expanded: frozenset[str] = frozenset()) -> Any:
    """Return a deep copy of ``value`` with Stripe's types and shapes.

    * known boolean fields become real booleans (metadata is left alone: its values
      are strings by definition);
    * a PaymentIntent's ``latest_charge`` is an id unless expanded, and the
      ``charges`` list Stripe removed in API version 2022-11-15 is dropped.

    ``expanded`` holds the request's ``expand`` paths relative to ``value``.
    """
    if isinstance(value, (list, tuple)):
        return [normalise(item, expanded) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key == "metadata" and isinstance(item, dict):
            result[key] = dict(item)
        elif key in _BOOLEAN_FIELDS and isinstance(item, str) and item in ("true", "false"):
            result[key] = item == "true"
        else:
            prefix = key + "."
            inner = frozenset(p.removeprefix(prefix) for p in expanded if p.startswith(prefix))
            result[key] = normalise(item, inner)
    if result.get("object") == "payment_intent":
        result.pop("charges", None)
        charge = result.get("latest_charge")
        if isinstance(charge, dict) and "latest_charge" not in expanded:
            result["latest_charge"] = charge["id"]
    return result
