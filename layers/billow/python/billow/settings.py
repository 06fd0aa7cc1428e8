"""Runtime configuration, read from the environment the stack (or the local runtime) sets."""

from __future__ import annotations

import os

from pydantic import BaseModel


class Settings(BaseModel):
    table_name: str
    event_bus_name: str
    secrets_prefix: str = "billow"
    public_api_url: str
    """Base URL of the HTTP API, used for the Stripe webhook endpoint Billow registers."""
    stripe_api_base: str | None = None
    """Set only in local mode: the Stripe emulator's address."""
    webhook_retry_base_s: int = 30
    """First backoff step for failed outgoing webhook deliveries (doubles each attempt)."""
    sync_retry_base_s: int = 30
    """First backoff step for a Stripe sync that Stripe could not take (doubles each time)."""
    queue_urls: dict[str, str] = {}
    """URLs of the queues this function sends to itself (topology ``sends_to``), by name."""
    topic_arns: dict[str, str] = {}
    """ARNs of the topics this function publishes to (topology ``publishes_to``), by name."""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            table_name=env["BILLOW_TABLE_NAME"],
            event_bus_name=env["BILLOW_EVENT_BUS_NAME"],
            secrets_prefix=env.get("BILLOW_SECRETS_PREFIX", "billow"),
            public_api_url=env.get("BILLOW_PUBLIC_API_URL", "").rstrip("/"),
            stripe_api_base=env.get("BILLOW_STRIPE_API_BASE") or None,
            webhook_retry_base_s=int(env.get("BILLOW_WEBHOOK_RETRY_BASE_S", "30")),
            sync_retry_base_s=int(env.get("BILLOW_SYNC_RETRY_BASE_S", "30")),
            queue_urls=_named(env, QUEUE_URL_PREFIX),
            topic_arns=_named(env, TOPIC_ARN_PREFIX),
        )


QUEUE_URL_PREFIX = "BILLOW_QUEUE_URL_"
TOPIC_ARN_PREFIX = "BILLOW_TOPIC_ARN_"


def env_name(prefix: str, resource: str) -> str:
    """``BILLOW_QUEUE_URL_INVOICE_WORK`` for the ``invoice-work`` queue."""
    return prefix + resource.upper().replace("-", "_")


def _named(env: os._Environ[str], prefix: str) -> dict[str, str]:
    return {
        key[len(prefix) :].lower().replace("_", "-"): value
        for key, value in env.items()
        if key.startswith(prefix)
    }
