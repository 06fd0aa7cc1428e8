"""Per-request context the API entry point establishes before routing."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from billow.composition import Dependencies, dependencies


def organization_id(router: Router) -> str:
    """The caller's organization, set by authentication; every route scopes to it."""
    return str(router.context["organization_id"])


def deps() -> Dependencies:
    return dependencies()
