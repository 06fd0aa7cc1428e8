"""Organizations, their API keys and their Stripe connections (access patterns: the
Store's, ``billow.adapters.dynamodb``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from billow.adapters.listing import Read, Repository, parser_of
from billow.adapters.table import Item, Transaction, document, org_pk, packed
from billow.domain.events import OutboxEvent
from billow.domain.integrations import StripeConnection
from billow.domain.organizations import BillingHints, Organization


def _organization_key(organization_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": "ORGANIZATION"}


class OrganizationRecords(Repository):
    def create(self, organization: Organization, api_key_hash: str) -> None:
        transaction = Transaction()
        transaction.put(
            {
                **_organization_key(organization.id),
                "kind": "organization",
                "GSI1PK": "ORGANIZATIONS",
                "GSI1SK": organization.id,
                "data": packed(organization),
                "customer_sequence": 0,
                # Kept from now on by the writes of taxes and connections (BillingHints).
                HINTS_SINCE: 1,
                DEFAULT_TAXES: 0,
            },
            condition="attribute_not_exists(PK)",
        )
        transaction.put(
            {
                "PK": f"API_KEY#{api_key_hash}",
                "SK": "API_KEY",
                "kind": "api_key",
                "organization_id": organization.id,
            },
            condition="attribute_not_exists(PK)",
        )
        self._db.commit(transaction)

    @staticmethod
    def ref(organization_id: str) -> Read[Organization]:
        key = _organization_key(organization_id)
        return Read(key["PK"], key["SK"], _organization)

    def get(self, organization_id: str) -> Organization | None:
        return self._db.get(self.ref(organization_id))

    def save(self, organization: Organization) -> None:
        """Replace the organization's document, leaving its counters alone."""
        self._db.table.update_item(
            Key=_organization_key(organization.id),
            UpdateExpression="SET #data = :data",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeNames={"#data": "data"},
            ExpressionAttributeValues={":data": packed(organization)},
        )

    def get_id_for_api_key(self, api_key_hash: str) -> str | None:
        item = self._db.table.get_item(Key={"PK": f"API_KEY#{api_key_hash}", "SK": "API_KEY"}).get(
            "Item"
        )
        return str(item["organization_id"]) if item else None

    def list_ids(self) -> Iterator[str]:
        for item in self._db.query_index("ORGANIZATIONS"):
            yield str(item["GSI1SK"])

    def next_customer_sequence(self, organization_id: str) -> int:
        """Sequential customer numbers per organization, from an atomic counter."""
        result = self._db.table.update_item(
            Key=_organization_key(organization_id),
            UpdateExpression="ADD customer_sequence :one",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(str(result["Attributes"]["customer_sequence"]))


HINTS_SINCE = "billing_hints"
"""Present on organizations created since their billing hints were kept (``Organization
.billing_hints``); the older ones have none and billing reads what the hints would spare."""
DEFAULT_TAXES = "default_taxes"
STRIPE_TAX_CONNECTIONS = "stripe_tax_connections"


def _organization(item: Item) -> Organization:
    organization = Organization.model_validate(document(item))
    if HINTS_SINCE in item:
        organization.billing_hints = BillingHints(
            default_taxes=int(str(item.get(DEFAULT_TAXES, 0))),
            stripe_tax_connections=frozenset(item.get(STRIPE_TAX_CONNECTIONS) or ()),
        )
    return organization


def stage_hint(transaction: Transaction, organization_id: str, update: str, values: Item) -> None:
    """Move a billing hint with the write it follows (the organization must exist: the
    update would otherwise make an organization item of nothing)."""
    transaction.update(
        _organization_key(organization_id),
        update,
        condition="attribute_exists(PK)",
        values=values,
    )


def _connection_key(organization_id: str, code: str) -> dict[str, str]:
    return {"PK": org_pk(organization_id), "SK": f"INTEGRATION#stripe#{code}"}


class ConnectionRecords(Repository):
    """An organization's Stripe connections, by code."""

    def save(
        self,
        connection: StripeConnection,
        events: Sequence[OutboxEvent] = (),
        *,
        previous: StripeConnection | None,
    ) -> None:
        """Store the connection, with the commands its change causes (sync started). The
        organization's Stripe Tax hint moves with it when ``automatic_tax`` changed from
        ``previous`` (the connection as read, None if new): only then does the write touch
        the organization's item, which other writes may be changing."""
        transaction = Transaction()
        transaction.put(
            {
                **_connection_key(connection.organization_id, connection.code),
                "kind": "stripe_connection",
                "data": packed(connection),
            }
        )
        if previous is None or previous.automatic_tax != connection.automatic_tax:
            self._stage_tax_hint(transaction, connection, on=connection.automatic_tax)
        transaction.publish(events)
        self._db.commit(transaction)

    @staticmethod
    def _stage_tax_hint(transaction: Transaction, connection: StripeConnection, on: bool) -> None:
        stage_hint(
            transaction,
            connection.organization_id,
            f"{'ADD' if on else 'DELETE'} {STRIPE_TAX_CONNECTIONS} :code",
            {":code": {connection.code}},
        )

    @staticmethod
    def ref(organization_id: str, code: str) -> Read[StripeConnection]:
        key = _connection_key(organization_id, code)
        return Read(key["PK"], key["SK"], parser_of(StripeConnection))

    def get(self, organization_id: str, code: str) -> StripeConnection | None:
        return self._db.get(self.ref(organization_id, code))

    def list_all(self, organization_id: str) -> list[StripeConnection]:
        return [
            StripeConnection.model_validate(document(item))
            for item in self._db.query_prefix(org_pk(organization_id), "INTEGRATION#stripe#")
        ]

    def delete(self, connection: StripeConnection) -> None:
        transaction = Transaction()
        transaction.delete(_connection_key(connection.organization_id, connection.code))
        self._stage_tax_hint(transaction, connection, on=False)
        self._db.commit(transaction)
