"""The single DynamoDB table.

Every item of an organization lives in its partition ``ORG#{organization_id}``; nothing
an API key can reach is read from another partition. Objects are stored as a JSON
document in ``data`` next to the key attributes, so money and nested objects round-trip
exactly (no floats, no Decimal surprises).

Access patterns (each a key lookup or a Query, never a Scan); ``{org}`` is ``ORG#{id}``:

- organization by id: PK={org} SK=ORGANIZATION
- organization by API key (auth): PK=API_KEY#{sha256(key)} SK=API_KEY
- all organizations (system sweeps): GSI1PK=ORGANIZATIONS
- Stripe connection by code / all: PK={org} SK=INTEGRATION#stripe#{code} / begins_with
- the catalog's sync state in Stripe: ``billow.adapters.stripe_sync_records``
- the Billing Portal configuration in Stripe: ``billow.adapters.stripe_portal_records``
- billable metrics, raw events and usage aggregates: ``billow.adapters.usage_records``
- customer by external id / all (sweeps that visit each): PK={org} SK=CUSTOMER#{external_id}
  / begins_with
- customer list, newest first (keys only): GSI3PK={org}#CUSTOMERS
  GSI3SK={created_at}#{sequential_id:012}; its count: PK={org} SK begins_with
  COUNTER#CUSTOMERS#SHARD# (``all``, summed over the shards)
- customer by Stripe customer id: GSI1PK={org}#STRIPE_CUSTOMER#{cus_id}
- a customer's payment methods: PK={org} SK begins_with PAYMENT_METHOD#{customer_lago_id}#
- payment method by Stripe id: GSI1PK={org}#STRIPE_PAYMENT_METHOD#{pm_id}
- what orders a customer's default payment method: PK={org} SK=PAYMENT_DEFAULT#{customer_lago_id}
- webhook endpoint by id / all: PK={org} SK=WEBHOOK_ENDPOINT#{lago_id} / begins_with
- tax by code / all: PK={org} SK=TAX#{code} / begins_with
- plan by id (deleted ones too) / all: PK={org} SK=PLAN#{lago_id} / begins_with
- live plan by code: PK={org} SK=PLAN_CODE#{code} → lago_id, then the plan by id
- add-on by code / all: PK={org} SK=ADD_ON#{code} / begins_with
- coupon by id (deleted ones too) / all: PK={org} SK=COUPON#{lago_id} / begins_with
- live coupon by code: PK={org} SK=COUPON_CODE#{code} → lago_id, then the coupon by id
- a customer's applied coupons / all: PK={org}
  SK begins_with APPLIED_COUPON#{customer_lago_id}# / APPLIED_COUPON#
- Stripe event (inbox, de-duplication): PK={org} SK=STRIPE_EVENT#{evt_id}
- Stripe events not yet processed: GSI2PK={org}#STRIPE_EVENT_PENDING GSI2SK=received_at
- where the reconciliation's next look at a Stripe account's events starts:
  PK={org} SK=STRIPE_EVENTS_CURSOR#{code}
- outbox (stream → bus, TTL 2 days), the events of one transaction:
  PK={org} SK=OUTBOX#{first event_id}
- webhook delivered to an endpoint (TTL 30 days): PK={org} SK=WEBHOOK_DELIVERY#{event}#{endpoint}
- Powertools idempotency records: PK=IDEMPOTENCY#{function} SK={hash} (hashes, no tenant data)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from billow.adapters.billing_records import BillingRecords
from billow.adapters.catalog_records import ADD_ONS, PLANS, CatalogRecords, tax_scope
from billow.adapters.invoice_numbering import NumberingRecords
from billow.adapters.listing import ALL, Listing, Tally, list_attributes, stage_counts
from billow.adapters.stripe_portal_records import StripePortalRecords
from billow.adapters.stripe_sync_records import StripeSyncRecords
from billow.adapters.table import (
    MAX_SORT_KEY_BYTES,
    Item,
    TableBase,
    Transaction,
    document,
    expires_in,
    org_pk,
    packed,
)
from billow.adapters.usage_records import UsageRecords
from billow.domain.customers import Customer, DefaultPaymentMethodState, PaymentMethod
from billow.domain.events import OutboxEvent
from billow.domain.integrations import StripeConnection
from billow.domain.organizations import Organization
from billow.domain.webhooks import WebhookEndpoint

DELIVERY_TTL_S = 30 * 24 * 3600
STRIPE_EVENT_TTL_S = 90 * 24 * 3600

CUSTOMERS = "CUSTOMERS"

__all__ = ["Store", "Transaction", "org_pk"]


def customer_listing(customer: Customer) -> Listing:
    """Newest first; a customer also counts in its taxes' counters (``TAX#{code}``)."""
    return Listing(
        family=CUSTOMERS,
        sort_key=f"{customer.created_at}#{customer.sequential_id:012d}",
        partitions={"GSI3": ""},
        tallies=frozenset(
            {Tally("", ALL), *(Tally(tax_scope(code), ALL) for code in set(customer.tax_codes))}
        ),
    )


class Store(BillingRecords, CatalogRecords, NumberingRecords, TableBase):
    """Repository over the table. Methods take the organization id first: tenancy is explicit."""

    @functools.cached_property
    def stripe_sync(self) -> StripeSyncRecords:
        """Sync states of the catalog mirrored in Stripe (a repository composed, not mixed in)."""
        return StripeSyncRecords(self)

    @functools.cached_property
    def stripe_portal(self) -> StripePortalRecords:
        """The Billing Portal configuration kept in each connected Stripe account."""
        return StripePortalRecords(self)

    @functools.cached_property
    def usage(self) -> UsageRecords:
        """Billable metrics, raw events and the aggregates charges are billed from."""
        return UsageRecords(self)

    # -- organizations -------------------------------------------------------------------

    def create_organization(self, organization: Organization, api_key_hash: str) -> None:
        transaction = Transaction()
        transaction.put(
            {
                "PK": org_pk(organization.id),
                "SK": "ORGANIZATION",
                "kind": "organization",
                "GSI1PK": "ORGANIZATIONS",
                "GSI1SK": organization.id,
                "data": packed(organization),
                "customer_sequence": 0,
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
        self.commit(transaction)

    def get_organization(self, organization_id: str) -> Organization | None:
        item = self._get(org_pk(organization_id), "ORGANIZATION")
        return Organization.model_validate(document(item)) if item else None

    def save_organization(self, organization: Organization) -> None:
        """Replace the organization's document, leaving its counters alone."""
        self.table.update_item(
            Key={"PK": org_pk(organization.id), "SK": "ORGANIZATION"},
            UpdateExpression="SET #data = :data",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeNames={"#data": "data"},
            ExpressionAttributeValues={":data": packed(organization)},
        )

    def organization_for_api_key(self, api_key_hash: str) -> str | None:
        item = self.table.get_item(Key={"PK": f"API_KEY#{api_key_hash}", "SK": "API_KEY"}).get(
            "Item"
        )
        return str(item["organization_id"]) if item else None

    def organization_ids(self) -> Iterator[str]:
        for item in self._query_index("ORGANIZATIONS"):
            yield str(item["GSI1SK"])

    def next_customer_sequence(self, organization_id: str) -> int:
        """Sequential customer numbers per organization, from an atomic counter."""
        result = self.table.update_item(
            Key={"PK": org_pk(organization_id), "SK": "ORGANIZATION"},
            UpdateExpression="ADD customer_sequence :one",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(str(result["Attributes"]["customer_sequence"]))

    # -- Stripe connections --------------------------------------------------------------

    def save_connection(
        self, connection: StripeConnection, events: Sequence[OutboxEvent] = ()
    ) -> None:
        """Store the connection, with the commands its change causes (sync started)."""
        transaction = Transaction()
        transaction.put(
            {
                "PK": org_pk(connection.organization_id),
                "SK": f"INTEGRATION#stripe#{connection.code}",
                "kind": "stripe_connection",
                "data": packed(connection),
            }
        )
        transaction.publish(events)
        self.commit(transaction)

    def get_connection(self, organization_id: str, code: str) -> StripeConnection | None:
        item = self._get(org_pk(organization_id), f"INTEGRATION#stripe#{code}")
        return StripeConnection.model_validate(document(item)) if item else None

    def list_connections(self, organization_id: str) -> list[StripeConnection]:
        return [
            StripeConnection.model_validate(document(item))
            for item in self._query_prefix(org_pk(organization_id), "INTEGRATION#stripe#")
        ]

    def delete_connection(self, connection: StripeConnection) -> None:
        self.table.delete_item(
            Key={
                "PK": org_pk(connection.organization_id),
                "SK": f"INTEGRATION#stripe#{connection.code}",
            }
        )

    # -- customers -----------------------------------------------------------------------

    @staticmethod
    def customer_item(customer: Customer) -> Item:
        item: Item = {
            "PK": org_pk(customer.organization_id),
            "SK": f"CUSTOMER#{customer.external_id}",
            "kind": "customer",
            "data": packed(customer),
            "version": customer.version,
            **list_attributes(customer.organization_id, customer_listing(customer)),
        }
        if customer.stripe_customer_id:
            item["GSI1PK"] = (
                f"{org_pk(customer.organization_id)}#STRIPE_CUSTOMER#{customer.stripe_customer_id}"
            )
            item["GSI1SK"] = customer.external_id
        return item

    def save_customer(
        self, transaction: Transaction, customer: Customer, before: Customer | None
    ) -> None:
        """Stage a customer write that only succeeds over the version the caller read
        (``before``; None: a new customer), with the counts it moves in the same
        transaction (a new customer; tax codes added or removed)."""
        transaction.put_versioned(self.customer_item(customer), before.version if before else None)
        stage_counts(
            transaction,
            customer.organization_id,
            customer.lago_id,
            customer_listing(before) if before else None,
            customer_listing(customer),
        )

    def get_customer(self, organization_id: str, external_id: str) -> Customer | None:
        item = self._get(org_pk(organization_id), f"CUSTOMER#{external_id}")
        return Customer.model_validate(document(item)) if item else None

    def get_customers(self, organization_id: str, external_ids: Iterable[str]) -> list[Customer]:
        """The customers of these external ids that exist (one BatchGetItem per hundred)."""
        keys = [
            {"PK": org_pk(organization_id), "SK": f"CUSTOMER#{external_id}"}
            for external_id in dict.fromkeys(external_ids)
            if len(external_id.encode()) < MAX_SORT_KEY_BYTES - len("CUSTOMER#")
        ]
        return [Customer.model_validate(document(item)) for item in self.get_items(keys)]

    def list_customers(self, organization_id: str) -> Iterator[Customer]:
        """Every customer (by external id): for sweeps that must visit each one."""
        for item in self._query_prefix(org_pk(organization_id), "CUSTOMER#"):
            yield Customer.model_validate(document(item))

    def customer_page(self, organization_id: str, skip: int, take: int) -> list[Customer]:
        """Customers ``skip`` to ``skip + take``, newest first."""
        partition = f"{org_pk(organization_id)}#{CUSTOMERS}"
        keys = self.page_keys("GSI3", [partition], skip, take)
        return [Customer.model_validate(document(item)) for item in self.get_items(keys)]

    def customer_count(self, organization_id: str) -> int:
        return self.count(organization_id, CUSTOMERS, [ALL])

    def tax_users(self, organization_id: str, codes: Sequence[str]) -> dict[str, dict[str, int]]:
        """How many customers, plans and add-ons carry each tax, from the counters their
        writes keep (one BatchGetItem)."""
        families = {"customers_count": CUSTOMERS, "plans_count": PLANS, "add_ons_count": ADD_ONS}
        counts = self.scoped_counts(
            organization_id,
            [(family, tax_scope(code)) for code in codes for family in families.values()],
            ALL,
        )
        return {
            code: {field: counts[(family, tax_scope(code))] for field, family in families.items()}
            for code in codes
        }

    def customer_by_stripe_id(
        self, organization_id: str, stripe_customer_id: str
    ) -> Customer | None:
        for item in self._query_index(
            f"{org_pk(organization_id)}#STRIPE_CUSTOMER#{stripe_customer_id}"
        ):
            return self.get_customer(organization_id, str(item["GSI1SK"]))
        return None

    def delete_customer(self, customer: Customer) -> None:
        transaction = Transaction()
        transaction.delete(
            {"PK": org_pk(customer.organization_id), "SK": f"CUSTOMER#{customer.external_id}"},
            condition="attribute_exists(PK)",  # deleted once, uncounted once
        )
        for method in self.list_payment_methods(customer):
            transaction.delete(self._payment_method_key(method))
        transaction.delete(self._default_state_key(customer.organization_id, customer.lago_id))
        stage_counts(
            transaction,
            customer.organization_id,
            customer.lago_id,
            customer_listing(customer),
            None,
        )
        self.commit(transaction)

    # -- payment methods -----------------------------------------------------------------

    @staticmethod
    def _payment_method_key(method: PaymentMethod) -> Item:
        return {
            "PK": org_pk(method.organization_id),
            "SK": f"PAYMENT_METHOD#{method.customer_lago_id}#{method.lago_id}",
        }

    def payment_method_item(self, method: PaymentMethod) -> Item:
        return {
            **self._payment_method_key(method),
            "kind": "payment_method",
            "GSI1PK": (
                f"{org_pk(method.organization_id)}#STRIPE_PAYMENT_METHOD#{method.provider_method_id}"
            ),
            "GSI1SK": method.lago_id,
            "data": packed(method),
        }

    def list_payment_methods(self, customer: Customer) -> list[PaymentMethod]:
        """Read consistently: a change decided on this list is written only if the customer's
        DefaultPaymentMethodState, read before it, is unchanged."""
        items = self._query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": org_pk(customer.organization_id),
                ":prefix": f"PAYMENT_METHOD#{customer.lago_id}#",
            },
            ConsistentRead=True,
        )
        methods = [PaymentMethod.model_validate(document(item)) for item in items]
        return sorted(methods, key=lambda method: (method.created_at, method.lago_id), reverse=True)

    def payment_method_by_stripe_id(
        self, organization_id: str, stripe_payment_method_id: str
    ) -> PaymentMethod | None:
        key = f"{org_pk(organization_id)}#STRIPE_PAYMENT_METHOD#{stripe_payment_method_id}"
        for item in self._query_index(key):
            full = self._get(item["PK"], item["SK"])
            return PaymentMethod.model_validate(document(full)) if full else None
        return None

    def replace_payment_methods(
        self,
        transaction: Transaction,
        before: Sequence[PaymentMethod],
        after: Sequence[PaymentMethod],
    ) -> None:
        """Stage the difference between two views of a customer's payment methods."""
        kept = {method.lago_id for method in after}
        for method in before:
            if method.lago_id not in kept:
                transaction.delete(self._payment_method_key(method))
        previous = {method.lago_id: method for method in before}
        for method in after:
            if previous.get(method.lago_id) != method:
                transaction.put(self.payment_method_item(method))

    @staticmethod
    def _default_state_key(organization_id: str, customer_lago_id: str) -> Item:
        return {"PK": org_pk(organization_id), "SK": f"PAYMENT_DEFAULT#{customer_lago_id}"}

    def get_default_state(self, customer: Customer) -> DefaultPaymentMethodState:
        """The customer's state, or a fresh one (version 0) before its first change."""
        key = self._default_state_key(customer.organization_id, customer.lago_id)
        item = self._get(key["PK"], key["SK"])
        if item is None:
            return DefaultPaymentMethodState(
                organization_id=customer.organization_id, customer_lago_id=customer.lago_id
            )
        return DefaultPaymentMethodState.model_validate(document(item))

    def stage_default_state(
        self, transaction: Transaction, state: DefaultPaymentMethodState, expected_version: int
    ) -> None:
        """Stage the state; the transaction fails if another change got there first."""
        item = {
            **self._default_state_key(state.organization_id, state.customer_lago_id),
            "kind": "payment_default",
            "data": packed(state),
            "version": state.version,
        }
        if expected_version == 0:
            transaction.put(item, condition="attribute_not_exists(PK)")
        else:
            transaction.put(
                item, condition="version = :expected", values={":expected": expected_version}
            )

    # -- webhook endpoints ---------------------------------------------------------------

    def save_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.table.put_item(
            Item={
                "PK": org_pk(endpoint.organization_id),
                "SK": f"WEBHOOK_ENDPOINT#{endpoint.lago_id}",
                "kind": "webhook_endpoint",
                "data": packed(endpoint),
            }
        )

    def get_endpoint(self, organization_id: str, lago_id: str) -> WebhookEndpoint | None:
        item = self._get(org_pk(organization_id), f"WEBHOOK_ENDPOINT#{lago_id}")
        return WebhookEndpoint.model_validate(document(item)) if item else None

    def list_endpoints(self, organization_id: str) -> list[WebhookEndpoint]:
        endpoints = [
            WebhookEndpoint.model_validate(document(item))
            for item in self._query_prefix(org_pk(organization_id), "WEBHOOK_ENDPOINT#")
        ]
        return sorted(endpoints, key=lambda endpoint: (endpoint.created_at, endpoint.created_ns))

    def delete_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.table.delete_item(
            Key={
                "PK": org_pk(endpoint.organization_id),
                "SK": f"WEBHOOK_ENDPOINT#{endpoint.lago_id}",
            }
        )

    # -- outgoing deliveries -------------------------------------------------------------

    def delivered_endpoints(self, organization_id: str, event_id: str) -> set[str]:
        return {
            str(item["endpoint_id"])
            for item in self._query_prefix(org_pk(organization_id), f"WEBHOOK_DELIVERY#{event_id}#")
            if item.get("status") == "succeeded"
        }

    def record_delivery(
        self, organization_id: str, event_id: str, endpoint_id: str, status: str, detail: str
    ) -> None:
        """Remember each endpoint's outcome so a retried message skips endpoints already served."""
        self.table.update_item(
            Key={"PK": org_pk(organization_id), "SK": f"WEBHOOK_DELIVERY#{event_id}#{endpoint_id}"},
            UpdateExpression=(
                "SET #status = :status, endpoint_id = :endpoint, detail = :detail, "
                "kind = :kind, expires_at = :expires ADD attempts :one"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":status": status,
                ":endpoint": endpoint_id,
                ":detail": detail[:1000],
                ":kind": "webhook_delivery",
                ":expires": expires_in(DELIVERY_TTL_S),
                ":one": 1,
            },
        )

    # -- Stripe event inbox --------------------------------------------------------------

    def stage_stripe_event(
        self,
        transaction: Transaction,
        organization_id: str,
        code: str,
        event: dict[str, Any],
        received_at: str,
    ) -> None:
        """Stage an incoming Stripe event; the condition makes a redelivery a no-op."""
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": f"STRIPE_EVENT#{event['id']}",
                "kind": "stripe_event",
                "status": "received",
                "connection_code": code,
                "data": packed(event),
                # GSI2 copies ids only: entering and leaving it cost a write unit each,
                # and the item stays under the 1 KB a write unit covers.
                "GSI2PK": f"{org_pk(organization_id)}#STRIPE_EVENT_PENDING",
                "GSI2SK": received_at,
                "expires_at": expires_in(STRIPE_EVENT_TTL_S),
            },
            condition="attribute_not_exists(PK)",
        )

    def get_stripe_event(self, organization_id: str, event_id: str) -> Item | None:
        return self._get(org_pk(organization_id), f"STRIPE_EVENT#{event_id}")

    def mark_stripe_event(
        self,
        transaction: Transaction,
        organization_id: str,
        event_id: str,
        outcome: str,
        error: str | None = None,
    ) -> None:
        """Stage the end of processing: leaves the pending index, only once."""
        transaction.actions.append(
            {
                "Update": {
                    "Key": {"PK": org_pk(organization_id), "SK": f"STRIPE_EVENT#{event_id}"},
                    "UpdateExpression": (
                        "SET #status = :outcome, processing_error = :error REMOVE GSI2PK, GSI2SK"
                    ),
                    "ConditionExpression": "#status = :received",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":outcome": outcome,
                        ":error": error,
                        ":received": "received",
                    },
                }
            }
        )

    def stripe_events_cursor(self, organization_id: str, code: str) -> int | None:
        item = self._get(org_pk(organization_id), f"STRIPE_EVENTS_CURSOR#{code}")
        return int(str(item["created"])) if item else None

    def save_stripe_events_cursor(self, organization_id: str, code: str, created: int) -> None:
        """Move the cursor forward only: two overlapping sweeps never set it back."""
        try:
            self.table.put_item(
                Item={
                    "PK": org_pk(organization_id),
                    "SK": f"STRIPE_EVENTS_CURSOR#{code}",
                    "kind": "stripe_events_cursor",
                    "created": created,
                },
                ConditionExpression="attribute_not_exists(PK) OR created <= :created",
                ExpressionAttributeValues={":created": created},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def pending_stripe_events(self, organization_id: str, received_before: str) -> Iterator[Item]:
        yield from self._query(
            IndexName="GSI2",
            KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :below",
            ExpressionAttributeValues={
                ":pk": f"{org_pk(organization_id)}#STRIPE_EVENT_PENDING",
                ":below": received_before,
            },
        )
