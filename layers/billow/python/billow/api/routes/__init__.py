"""One Powertools Router per Lago resource, and the index the API loads them by.

Importing every route module pulls in every service, response and domain model, which
was most of the API function's cold start while a request needs one module. So the API
imports a module when a request first needs it, and finds which one from the request's
path alone, through this index. ``tests/unit/test_import_discipline.py`` holds it to the
modules' routes: every route is reachable through it, and it names nothing else."""

from __future__ import annotations

API_PREFIX = "/api/v1/"

MODULES = (
    "customers",
    "customer_usage",
    "integrations",
    "invoices",
    "organizations",
    "payment_methods",
    "subscriptions",
    "webhook_endpoints",
    "taxes",
    "plans",
    "add_ons",
    "coupons",
    "applied_coupons",
    "billable_metrics",
    "events",
)
"""Every route module, in the order the OpenAPI document lists their paths."""

BY_RESOURCE = {
    "add_ons": "add_ons",
    "applied_coupons": "applied_coupons",
    "billable_metrics": "billable_metrics",
    "coupons": "coupons",
    "customers": "customers",
    "events": "events",
    "integrations": "integrations",
    "invoices": "invoices",
    "organizations": "organizations",
    "plans": "plans",
    "subscriptions": "subscriptions",
    "taxes": "taxes",
    "webhook_endpoints": "webhook_endpoints",
}
"""The module serving ``/api/v1/<resource>`` and the paths under it, by resource."""

BY_NESTED_COLLECTION = {
    ("customers", "applied_coupons"): "applied_coupons",
    ("customers", "current_usage"): "customer_usage",
    ("customers", "invoices"): "invoices",
    ("customers", "past_usage"): "customer_usage",
    ("customers", "payment_methods"): "payment_methods",
    ("customers", "subscriptions"): "subscriptions",
}
"""The module serving what is nested under one object of a resource
(``/api/v1/customers/<id>/invoices``), by resource and the segment after the object's id:
the nested resource's module, not the parent's, so a request about the customer itself
loads none of these."""


def module_for(path: str) -> str | None:
    """The route module that serves ``path`` if any route does (None: no route can)."""
    if not path.startswith(API_PREFIX):
        return None
    segments = path.removeprefix(API_PREFIX).split("/")
    if len(segments) > 2 and (segments[0], segments[2]) in BY_NESTED_COLLECTION:
        return BY_NESTED_COLLECTION[(segments[0], segments[2])]
    return BY_RESOURCE.get(segments[0])
