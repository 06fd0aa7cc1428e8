"""Subscriptions, invoices, the invoice sequence and payment retries in the table.

Access patterns (``{org}`` is ``ORG#{id}``):

- subscriptions of an external id: PK={org} SK begins_with SUBSCRIPTION#{external_id}#
- all subscriptions of an organization: PK={org} SK begins_with SUBSCRIPTION#
- one start per generation of an external id: PK={org} SK=SUBSCRIPTION_START#{external_id}#{n}
- subscriptions due for billing (system sweep, sparse):
  GSI1PK=BILLING_DUE#{shard} GSI1SK <= {now}… (``{next_billing_at}#{org}#{lago_id}``)
- invoice by id / all: PK={org} SK=INVOICE#{lago_id} / begins_with INVOICE#
- a customer's invoices waiting for a payment method (sparse):
  GSI1PK={org}#AWAITING_PAYMENT_METHOD#{customer_lago_id}
- charge attempts in flight, oldest first (system sweep, sparse, GSI2: it copies only
  organization_id and lago_id, so an invoice entering or leaving it costs one write unit):
  GSI2PK=PAYMENT_IN_FLIGHT#{shard} GSI2SK <= {cutoff}… (``{requested_at}#{org}#{lago_id}``)
- invoice number sequence: PK={org} SK=INVOICE_SEQUENCE
- payment retries (dunning) of an invoice: PK={org} SK=DUNNING#{invoice_id}
- retries due (system sweep, sparse): GSI1PK=DUNNING_DUE#{shard} GSI1SK <= {now}…

The two due indexes and the in-flight index are the only cross-tenant reads here; they
serve the scheduled runs, which hand each item back to a worker that reads it again from
its organization's partition.
"""

from __future__ import annotations

from collections.abc import Iterator

from billow.adapters.table import Item, TableBase, Transaction, document, org_pk
from billow.domain.invoices import Invoice
from billow.domain.subscriptions import DUE_INDEX_SHARDS, Subscription, due_shard

AWAITING_PAYMENT_METHOD = frozenset({"no_payment_method", "no_payment_provider"})
"""Blocks a saved card lifts: it proves the customer is now reachable in Stripe too."""

DUE_SUFFIX = "~"
"""Sorts after every ``#…`` suffix, so ``GSI1SK <= now~`` includes everything due at ``now``."""


class BillingRecords(TableBase):
    # -- subscriptions --------------------------------------------------------------------

    @staticmethod
    def subscription_key(subscription: Subscription) -> Item:
        return {
            "PK": org_pk(subscription.organization_id),
            "SK": f"SUBSCRIPTION#{subscription.external_id}#{subscription.lago_id}",
        }

    def subscription_item(self, subscription: Subscription) -> Item:
        item: Item = {
            **self.subscription_key(subscription),
            "kind": "subscription",
            "data": subscription.model_dump_json(),
            "version": subscription.version,
        }
        if subscription.is_live and subscription.next_billing_at:
            item["GSI1PK"] = f"BILLING_DUE#{due_shard(subscription.lago_id)}"
            item["GSI1SK"] = (
                f"{subscription.next_billing_at}#{subscription.organization_id}"
                f"#{subscription.lago_id}"
            )
            item["organization_id"] = subscription.organization_id
            item["external_id"] = subscription.external_id
            item["lago_id"] = subscription.lago_id
        return item

    def stage_subscription(
        self, transaction: Transaction, subscription: Subscription, expected_version: int | None
    ) -> None:
        """Stage a write that only succeeds over the version the caller read."""
        if expected_version is None:
            transaction.put(
                self.subscription_item(subscription), condition="attribute_not_exists(PK)"
            )
        else:
            transaction.put(
                self.subscription_item(subscription),
                condition="version = :expected",
                values={":expected": expected_version},
            )

    @staticmethod
    def stage_subscription_start(
        transaction: Transaction, organization_id: str, external_id: str, generation: int
    ) -> None:
        """The ``generation``-th subscription of an external id can start only once: two
        simultaneous creations with one external id make one subscription, not two."""
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": f"SUBSCRIPTION_START#{external_id}#{generation}",
                "kind": "subscription_start",
            },
            condition="attribute_not_exists(PK)",
        )

    def subscriptions_for(self, organization_id: str, external_id: str) -> list[Subscription]:
        """Every subscription that carried this external id, oldest first."""
        subscriptions = [
            Subscription.model_validate(document(item))
            for item in self._query_prefix(org_pk(organization_id), f"SUBSCRIPTION#{external_id}#")
        ]
        matching = [s for s in subscriptions if s.external_id == external_id]
        return sorted(matching, key=lambda s: (s.created_at, s.lago_id))

    def get_subscription(
        self, organization_id: str, external_id: str, lago_id: str
    ) -> Subscription | None:
        item = self._get(org_pk(organization_id), f"SUBSCRIPTION#{external_id}#{lago_id}")
        return Subscription.model_validate(document(item)) if item else None

    def list_subscriptions(self, organization_id: str) -> Iterator[Subscription]:
        for item in self._query_prefix(org_pk(organization_id), "SUBSCRIPTION#"):
            yield Subscription.model_validate(document(item))

    def _due(
        self, index_prefix: str, now: str, attributes: str, index: str = "GSI1"
    ) -> Iterator[Item]:
        """Everything a sparse, sharded due index holds for ``now`` or earlier."""
        for shard in range(DUE_INDEX_SHARDS):
            yield from self._query(
                IndexName=index,
                KeyConditionExpression=f"{index}PK = :pk AND {index}SK <= :now",
                ExpressionAttributeValues={
                    ":pk": f"{index_prefix}#{shard}",
                    ":now": now + DUE_SUFFIX,
                },
                ProjectionExpression=attributes,
            )

    def due_subscriptions(self, now: str) -> Iterator[Item]:
        """Live subscriptions whose next billing time is at or before ``now``."""
        return self._due("BILLING_DUE", now, "organization_id, external_id, lago_id")

    # -- invoices ------------------------------------------------------------------------

    def invoice_item(self, invoice: Invoice) -> Item:
        item: Item = {
            "PK": org_pk(invoice.organization_id),
            "SK": f"INVOICE#{invoice.lago_id}",
            "kind": "invoice",
            "data": invoice.model_dump_json(),
            "version": invoice.version,
            "payment_status": invoice.payment_status,
        }
        if invoice.payment_block in AWAITING_PAYMENT_METHOD and invoice.is_payable:
            item["GSI1PK"] = (
                f"{org_pk(invoice.organization_id)}#AWAITING_PAYMENT_METHOD"
                f"#{invoice.lago_customer_id}"
            )
            item["GSI1SK"] = invoice.created_at
        if invoice.payment_in_flight:
            item["GSI2PK"] = f"PAYMENT_IN_FLIGHT#{due_shard(invoice.lago_id)}"
            item["GSI2SK"] = (
                f"{invoice.in_flight_since}#{invoice.organization_id}#{invoice.lago_id}"
            )
            item["organization_id"] = invoice.organization_id
            item["lago_id"] = invoice.lago_id
        return item

    def stage_invoice(
        self, transaction: Transaction, invoice: Invoice, expected_version: int | None
    ) -> None:
        """New invoices must not exist yet (that is what makes billing exactly-once)."""
        if expected_version is None:
            transaction.put(self.invoice_item(invoice), condition="attribute_not_exists(PK)")
        else:
            transaction.put(
                self.invoice_item(invoice),
                condition="version = :expected",
                values={":expected": expected_version},
            )

    def get_invoice(self, organization_id: str, lago_id: str) -> Invoice | None:
        item = self._get(org_pk(organization_id), f"INVOICE#{lago_id}")
        return Invoice.model_validate(document(item)) if item else None

    def list_invoices(self, organization_id: str) -> list[Invoice]:
        invoices = [
            Invoice.model_validate(document(item))
            for item in self._query_prefix(org_pk(organization_id), "INVOICE#")
        ]
        return sorted(invoices, key=lambda i: (i.created_at, i.sequential_id), reverse=True)

    def invoices_awaiting_payment_method(
        self, organization_id: str, customer_lago_id: str
    ) -> list[Invoice]:
        found = []
        for item in self._query_index(
            f"{org_pk(organization_id)}#AWAITING_PAYMENT_METHOD#{customer_lago_id}"
        ):
            invoice = self.get_invoice(organization_id, str(item["SK"]).removeprefix("INVOICE#"))
            if invoice is not None:
                found.append(invoice)
        return found

    def payments_in_flight(self, requested_before: str) -> Iterator[Item]:
        """Charge attempts requested at or before ``requested_before`` whose outcome is
        still unknown (each item names its organization and invoice)."""
        return self._due(
            "PAYMENT_IN_FLIGHT", requested_before, "organization_id, lago_id", index="GSI2"
        )

    def invoice_sequence(self, organization_id: str) -> int:
        item = self._get(org_pk(organization_id), "INVOICE_SEQUENCE")
        return int(str(item["value"])) if item else 0

    @staticmethod
    def stage_invoice_sequence(transaction: Transaction, organization_id: str, read: int) -> None:
        """Take number ``read + 1``; fails if another invoice took it first (no gaps, no twins)."""
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": "INVOICE_SEQUENCE",
                "kind": "invoice_sequence",
                "value": read + 1,
            },
            condition="attribute_not_exists(PK)" if read == 0 else "#value = :read",
            values=None if read == 0 else {":read": read},
            names=None if read == 0 else {"#value": "value"},
        )

    # -- payment retries -----------------------------------------------------------------

    def get_dunning(self, organization_id: str, invoice_id: str) -> Item | None:
        return self._get(org_pk(organization_id), f"DUNNING#{invoice_id}")

    @staticmethod
    def stage_dunning(
        transaction: Transaction,
        organization_id: str,
        invoice_id: str,
        *,
        retries_done: int,
        after_attempt: int,
        next_attempt_at: str | None,
        expected_after_attempt: int | None,
    ) -> None:
        """Plan (or finish) the retries of one invoice; conditional so each failure plans once."""
        item: Item = {
            "PK": org_pk(organization_id),
            "SK": f"DUNNING#{invoice_id}",
            "kind": "dunning",
            "organization_id": organization_id,
            "invoice_id": invoice_id,
            "retries_done": retries_done,
            "after_attempt": after_attempt,
        }
        if next_attempt_at:
            item["next_attempt_at"] = next_attempt_at
            item["GSI1PK"] = f"DUNNING_DUE#{due_shard(invoice_id)}"
            item["GSI1SK"] = f"{next_attempt_at}#{organization_id}#{invoice_id}"
        if expected_after_attempt is None:
            transaction.put(item, condition="attribute_not_exists(PK)")
        else:
            transaction.put(
                item,
                condition="after_attempt = :expected",
                values={":expected": expected_after_attempt},
            )

    def due_retries(self, now: str) -> Iterator[Item]:
        return self._due(
            "DUNNING_DUE", now, "organization_id, invoice_id, after_attempt, retries_done"
        )
