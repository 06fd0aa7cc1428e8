"""Resolving an API key to its organization: the first thing every API request does.

Kept apart from ``billow.services.organizations``, whose settings models an API request
seldom needs: the API function imports this at cold start, and that only when asked."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.organizations import hash_api_key


def organization_for_api_key(deps: Dependencies, api_key: str) -> str | None:
    return deps.store.organizations.get_id_for_api_key(hash_api_key(api_key))
