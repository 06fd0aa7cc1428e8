"""Invoices waiting for their number, the organization's number sequence, and the lease of
whoever is numbering them (access patterns: the Store's, ``billow.adapters.dynamodb``).

Waiting invoices are read strongly consistent: a numberer must see every invoice
committed before it looks (``billow.services.invoice_numbering``).
"""

from __future__ import annotations

from collections.abc import Iterator

from billow.adapters.listing import Repository
from billow.adapters.table import Item, Transaction, document, org_pk, packed
from billow.domain.errors import ConcurrentUpdate
from billow.domain.invoices import Invoice
from billow.domain.subscriptions import DUE_INDEX_SHARDS, due_shard

WAITING = "INVOICE_TO_NUMBER#"
SEQUENCE = "INVOICE_SEQUENCE"
LEASE = "INVOICE_NUMBERING_LEASE"
SWEEP = "INVOICES_TO_NUMBER"


def _waiting_key(organization_id: str, lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"{WAITING}{lago_id}"}


class NumberingRecords(Repository):
    def stage_waiting(self, transaction: Transaction, invoice: Invoice, queued_at: str) -> None:
        """An issued invoice, kept aside until it gets its number. Keyed by the invoice's
        id, and refused when that invoice is already waiting or already numbered: the id
        is derived from what it bills, so a second issuer of the same thing fails here."""
        transaction.put(
            {
                **_waiting_key(invoice.organization_id, invoice.lago_id),
                "kind": "invoice_to_number",
                "data": packed(invoice),
                "GSI2PK": f"{SWEEP}#{due_shard(invoice.lago_id)}",
                "GSI2SK": f"{queued_at}#{invoice.organization_id}#{invoice.lago_id}",
                "organization_id": invoice.organization_id,
                "lago_id": invoice.lago_id,
            },
            condition="attribute_not_exists(PK)",
        )
        transaction.condition_check(
            {"PK": org_pk(invoice.organization_id), "SK": f"INVOICE#{invoice.lago_id}"},
            "attribute_not_exists(PK)",
        )

    def get_waiting(self, organization_id: str, lago_id: str) -> Invoice | None:
        item = self._db.get_item(org_pk(organization_id), f"{WAITING}{lago_id}")
        return Invoice.model_validate(document(item)) if item else None

    def list_waiting(self, organization_id: str, limit: int) -> list[Invoice]:
        """Up to ``limit`` waiting invoices, read strongly consistent."""
        page = self._db.table.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": org_pk(organization_id), ":prefix": WAITING},
            ConsistentRead=True,
            Limit=limit,
        )
        return [Invoice.model_validate(document(item)) for item in page["Items"]]

    def list_stranded(self, cutoff: str) -> Iterator[str]:
        """Organizations with an invoice waiting since before ``cutoff`` (a numberer that
        stopped half-way): each named once per waiting invoice."""
        for shard in range(DUE_INDEX_SHARDS):
            for item in self._db.query(
                IndexName="GSI2",
                KeyConditionExpression="GSI2PK = :pk AND GSI2SK < :cutoff",
                ExpressionAttributeValues={":pk": f"{SWEEP}#{shard}", ":cutoff": cutoff},
                ProjectionExpression="organization_id",
            ):
                yield str(item["organization_id"])

    @staticmethod
    def stage_not_waiting(transaction: Transaction, invoice: Invoice) -> None:
        """An invoice numbered as it is issued must not be waiting already (a replayed
        request whose first try was set aside)."""
        transaction.condition_check(
            _waiting_key(invoice.organization_id, invoice.lago_id), "attribute_not_exists(PK)"
        )

    @staticmethod
    def stage_numbered(transaction: Transaction, invoice: Invoice) -> None:
        """The waiting copy goes as the numbered invoice is written (by the caller)."""
        transaction.delete(
            _waiting_key(invoice.organization_id, invoice.lago_id),
            condition="attribute_exists(PK)",
        )

    def get_sequence(self, organization_id: str) -> int:
        item = self._db.get_item(org_pk(organization_id), SEQUENCE)
        return int(str(item["value"])) if item else 0

    @staticmethod
    def stage_sequence(
        transaction: Transaction, organization_id: str, read: int, taken: int
    ) -> None:
        """Take numbers ``read + 1`` to ``read + taken``; fails if another numberer took
        any of them first (no gaps, no twins)."""
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": SEQUENCE,
                "kind": "invoice_sequence",
                "value": read + taken,
            },
            condition="attribute_not_exists(PK)" if read == 0 else "#value = :read",
            values=None if read == 0 else {":read": read},
            names=None if read == 0 else {"#value": "value"},
        )

    def lease_held(self, organization_id: str, now_ms: int) -> bool:
        item = self._db.get_item(org_pk(organization_id), LEASE)
        return item is not None and int(str(item["held_until"])) > now_ms

    def take_lease(self, organization_id: str, owner: str, now_ms: int, held_until: int) -> bool:
        """Become the organization's numberer, unless someone holds an unexpired lease."""
        transaction = Transaction()
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": LEASE,
                "kind": "invoice_numbering_lease",
                "owner": owner,
                "held_until": held_until,
            },
            condition="attribute_not_exists(PK) OR held_until <= :now",
            values={":now": now_ms},
        )
        try:
            self._db.commit(transaction)
        except ConcurrentUpdate:
            return False
        return True

    def release_lease(self, organization_id: str, owner: str) -> None:
        """Give the lease up, unless it expired and someone else took it meanwhile."""
        transaction = Transaction()
        transaction.delete(
            {"PK": org_pk(organization_id), "SK": LEASE},
            condition="#owner = :owner",
            values={":owner": owner},
            names={"#owner": "owner"},
        )
        try:
            self._db.commit(transaction)
        except ConcurrentUpdate:
            return
