"""Idempotency-Key replay, per account, as Stripe does it (localstripe ignores the header).

Billow retries Stripe calls with the same key after timeouts; only replay proves that
such a retry creates nothing twice. The stripe SDK sends a fresh key with every POST,
so every POST is recorded; records are dropped after 24 hours, oldest first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from urllib.parse import parse_qsl

from aiohttp import web

from .common import Handler
from .context import REQUEST_ID, current
from .errors import StripeApiError

TTL_SECONDS = 24 * 60 * 60
_NOT_SAVED = frozenset({400, 401, 403, 404, 409, 429})


@dataclasses.dataclass
class _Record:
    expires: float
    endpoint: str
    fingerprint: str
    request_id: str
    # (status, body, content type) once the first request has been answered.
    answer: tuple[int, bytes, str] | None = None


class IdempotencyStore:
    def __init__(self) -> None:
        self._records: dict[tuple[str | None, str], _Record] = {}

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)
        endpoint = f"{request.method} {request.path}"
        fingerprint = await _fingerprint(request)
        now = time.time()
        self._forget_expired(now)
        slot = (current().account, key)
        record = self._records.get(slot)
        if record is not None:
            return _replay(record, key, endpoint, fingerprint)
        record = self._records[slot] = _Record(
            now + TTL_SECONDS, endpoint, fingerprint, request[REQUEST_ID]
        )
        try:
            response = await handler(request)
        except BaseException:
            del self._records[slot]
            raise
        # As Stripe documents it: a request refused before it ran (bad parameters, auth,
        # a conflict or a rate limit) saves nothing, so a corrected retry with the same key
        # runs; anything that ran, a card decline included, is replayed.
        if response.status in _NOT_SAVED or not isinstance(response, web.Response):
            del self._records[slot]
        else:
            body = response.body if isinstance(response.body, bytes) else b""
            record.answer = (response.status, body, response.content_type)
        return response

    def _forget_expired(self, now: float) -> None:
        # Records are inserted in time order, so the expired ones are at the front.
        while self._records:
            oldest = next(iter(self._records))
            if self._records[oldest].expires > now:
                break
            del self._records[oldest]


async def _fingerprint(request: web.Request) -> str:
    """What must match for a replay: the parameters, whatever their order on the wire."""
    body = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        params = repr(sorted(parse_qsl(body.decode(errors="replace"), keep_blank_values=True)))
        body = params.encode()
    query = repr(sorted(request.query.items())).encode()
    return hashlib.sha256(query + b"\0" + body).hexdigest()


def _replay(record: _Record, key: str, endpoint: str, fingerprint: str) -> web.Response:
    retry = f"Try using a key other than '{key}' if you meant to execute a different request."
    if record.endpoint != endpoint:
        raise StripeApiError(
            400,
            "Keys for idempotent requests can only be used for the same endpoint they were "
            f"first used for ('{record.endpoint}' vs '{endpoint}'). {retry}",
            type="idempotency_error",
        )
    if record.fingerprint != fingerprint:
        raise StripeApiError(
            400,
            "Keys for idempotent requests can only be used with the same parameters they "
            f"were first used with. {retry}",
            type="idempotency_error",
        )
    if record.answer is None:
        raise StripeApiError(
            409,
            "There is currently another in-progress request using this Idempotent Key "
            f"(that probably means you submitted twice, and the other request is still "
            f"going through): {key}. Please try again later.",
            type="idempotency_error",
        )
    status, body, content_type = record.answer
    return web.Response(
        status=status,
        body=body,
        content_type=content_type,
        headers={
            "Idempotent-Replayed": "true",
            "Original-Request": record.request_id,
            "Request-Id": record.request_id,
        },
    )
