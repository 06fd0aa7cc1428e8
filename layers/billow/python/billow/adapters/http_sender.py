"""Outgoing HTTP for webhook delivery (stdlib only: nothing to import at cold start)."""

from __future__ import annotations

import urllib.error
import urllib.request

TIMEOUT_S = 10


class Delivery:
    def __init__(self, ok: bool, detail: str) -> None:
        self.ok = ok
        self.detail = detail


def post(url: str, body: bytes, headers: dict[str, str]) -> Delivery:
    """POST and report the outcome; any 2xx is success, everything else is retried later."""
    # Endpoint URLs are validated as http(s) when they are registered.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return Delivery(200 <= response.status < 300, f"HTTP {response.status}")
    except urllib.error.HTTPError as error:
        return Delivery(False, f"HTTP {error.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return Delivery(False, f"network error: {error}")
