"""The Billing Portal configuration Billow keeps in each connected Stripe account
(``store.stripe_portal``; access pattern: the Store's, ``billow.adapters.dynamodb``).

The webhook endpoint id in its key names the account: a connection given a key of another
account registers a new endpoint, and so gets a configuration of its own there.
"""

from __future__ import annotations

from billow.adapters.listing import Repository
from billow.adapters.table import Item, org_pk
from billow.domain.integrations import StripeConnection


def _key(connection: StripeConnection, version: int) -> Item:
    return {
        "PK": org_pk(connection.organization_id),
        "SK": f"STRIPE_PORTAL#{connection.code}#{connection.webhook_endpoint_id}#v{version}",
    }


class StripePortalRecords(Repository):
    def get_configuration_id(self, connection: StripeConnection, version: int) -> str | None:
        key = _key(connection, version)
        item = self._db.get_item(str(key["PK"]), str(key["SK"]))
        return str(item["configuration_id"]) if item else None

    def save_configuration_id(
        self, connection: StripeConnection, version: int, configuration_id: str
    ) -> None:
        """Idempotent: two requests that raced to make it got the same one from Stripe
        (one idempotency key), so the last write stores the same id."""
        self._db.table.put_item(
            Item={
                **_key(connection, version),
                "kind": "stripe_portal_configuration",
                "configuration_id": configuration_id,
            }
        )
