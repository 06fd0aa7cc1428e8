"""localstripe's server module: its request parsing helpers and its route table.

Importing it builds localstripe's own aiohttp application, whose plain-function
handlers make aiohttp warn about deprecation; the warning says nothing about this
emulator, so it is silenced for that one import.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from localstripe import server

get_post_data = server.get_post_data
unflatten_data = server.unflatten_data


def routes() -> list[tuple[str, str, Any]]:
    """localstripe's routes as (method, path, async handler), in registration order."""
    return [
        (route.method, route.resource.canonical, route.handler)
        for route in server.app.router.routes()
        if route.resource is not None
    ]
