"""The Billing Portal configuration Billow keeps in each connected Stripe account.

A repository of its own, composed by the Store (``store.stripe_portal``). Access
pattern; ``{org}`` is ``ORG#{id}``:

- the configuration made for a connection's Stripe account, at one version of Billow's
  settings: PK={org} SK=STRIPE_PORTAL#{code}#{webhook_endpoint_id}#v{version}

The webhook endpoint id names the account: a connection given a key of another account
registers a new endpoint, and so gets a configuration of its own there.
"""

from __future__ import annotations

from billow.adapters.listing import ListRecords
from billow.adapters.table import Item, org_pk
from billow.domain.integrations import StripeConnection


def _key(connection: StripeConnection, version: int) -> Item:
    return {
        "PK": org_pk(connection.organization_id),
        "SK": f"STRIPE_PORTAL#{connection.code}#{connection.webhook_endpoint_id}#v{version}",
    }


class StripePortalRecords:
    def __init__(self, store: ListRecords) -> None:
        self._store = store

    def get_configuration_id(self, connection: StripeConnection, version: int) -> str | None:
        key = _key(connection, version)
        item = self._store._get(str(key["PK"]), str(key["SK"]))
        return str(item["configuration_id"]) if item else None

    def save_configuration_id(
        self, connection: StripeConnection, version: int, configuration_id: str
    ) -> None:
        """Idempotent: two requests that raced to make it got the same one from Stripe
        (one idempotency key), so the last write stores the same id."""
        self._store.table.put_item(
            Item={
                **_key(connection, version),
                "kind": "stripe_portal_configuration",
                "configuration_id": configuration_id,
            }
        )
