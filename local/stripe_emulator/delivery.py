"""Signed, ordered, retried webhook delivery (replaces localstripe's sleep-then-send-once)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import aiohttp
from localstripe import webhooks as localstripe_webhooks

from .controls import Controls
from .normalise import normalise
from .webhook_endpoints import endpoints_for

logger = logging.getLogger(__name__)

# Pauses between attempts: a failed delivery is tried len(RETRY_DELAYS) more times.
RETRY_DELAYS = (0.1, 0.5, 2.0)


@dataclasses.dataclass(frozen=True)
class _Delivery:
    event: Any
    url: str
    secret: str
    payload: bytes


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """``Stripe-Signature`` as Stripe computes it: HMAC-SHA256 of ``"<t>.<body>"``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookHub:
    """Sends each account's events to its endpoints, one FIFO queue per endpoint.

    A queue's worker retries its head before moving on, so an endpoint always sees
    events in creation order. Endpoints registered through localstripe's
    ``/_config/webhooks`` receive every event, as they did under localstripe. An event
    the account's deliveries are being dropped for (``/_config/drop_deliveries``) is
    sent to none of the account's endpoints and stays pending for each of them, as an
    event whose delivery failed for good does in Stripe.
    """

    def __init__(self, controls: Controls) -> None:
        self._controls = controls
        self._queues: dict[str, asyncio.Queue[_Delivery]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def publish(self, event: Any) -> None:
        endpoints = [
            (endpoint.id, endpoint.url, endpoint._secret, endpoint.api_version)
            for endpoint in endpoints_for(event._account, event.type)
        ]
        hooks = [
            ("_config/" + key, hook.url, hook.secret, None)
            for key, hook in localstripe_webhooks._webhooks.items()
            if hook.events is None or event.type in hook.events
        ]
        # A dropped event still counts as pending for the endpoints that never get it.
        event.pending_webhooks = len(endpoints) + len(hooks)
        dropped = bool(endpoints) and self._controls.take_drop(event._account, event.type)
        targets = hooks if dropped else endpoints + hooks
        body = normalise(event._export())
        for key, url, secret, api_version in targets:
            payload = {**body, "api_version": api_version or body["api_version"]}
            encoded = json.dumps(payload, indent=2).encode()
            self._queue(key).put_nowait(_Delivery(event, url, secret, encoded))

    def _queue(self, key: str) -> asyncio.Queue[_Delivery]:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._workers.append(asyncio.get_running_loop().create_task(self._drain(queue)))
        return queue

    async def _drain(self, queue: asyncio.Queue[_Delivery]) -> None:
        while True:
            delivery = await queue.get()
            for delay in (*RETRY_DELAYS, None):
                if await self._send(delivery):
                    delivery.event.pending_webhooks -= 1
                    break
                if delay is None:
                    logger.warning("giving up on %s to %s", delivery.event.type, delivery.url)
                else:
                    await asyncio.sleep(delay)

    async def _send(self, delivery: _Delivery) -> bool:
        assert self._session is not None, "hub not opened"
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(
                delivery.payload, delivery.secret, int(time.time())
            ),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            async with self._session.post(
                delivery.url, data=delivery.payload, headers=headers
            ) as response:
                if 200 <= response.status < 300:
                    return True
                logger.info("%s to %s: HTTP %d", delivery.event.type, delivery.url, response.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.info("%s to %s failed: %s", delivery.event.type, delivery.url, exc)
        return False
