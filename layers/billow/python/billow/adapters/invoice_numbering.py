"""Invoices waiting for their number, the organization's number sequence, and the lease of
whoever is numbering them (access patterns: the Store's, ``billow.adapters.dynamodb``).

Waiting invoices are read strongly consistent: a numberer must see every invoice
committed before it looks (``billow.services.invoice_numbering``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from billow.adapters.listing import Read, Repository
from billow.adapters.table import Item, Transaction, document, org_pk, packed
from billow.domain.errors import ConcurrentUpdate
from billow.domain.invoices import Invoice
from billow.domain.subscriptions import DUE_INDEX_SHARDS, due_shard

WAITING = "INVOICE_TO_NUMBER#"
SEQUENCE = "INVOICE_SEQUENCE"
SWEEP = "INVOICES_TO_NUMBER"
_UNHELD = "(attribute_not_exists(held_until) OR held_until <= :now)"


@dataclass(frozen=True)
class NumberSequence:
    """The organization's sequence item: the last number given, and until when (epoch ms)
    a numberer holds the lease on it (0: nobody). The lease lives on the sequence item so
    that an issuer learns both with one read, and numbers its invoice with one write
    when nobody holds it."""

    value: int
    held_until: int

    @classmethod
    def of(cls, item: Item) -> NumberSequence:
        return cls(int(str(item.get("value", 0))), int(str(item.get("held_until", 0))))

    def held(self, now_ms: int) -> bool:
        return self.held_until > now_ms


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

    @staticmethod
    def ref_sequence(organization_id: str) -> Read[NumberSequence]:
        return Read(org_pk(organization_id), SEQUENCE, NumberSequence.of)

    def get_sequence(self, organization_id: str) -> NumberSequence:
        """The last number given and who holds the lease, read strongly consistent."""
        return self._db.get(self.ref_sequence(organization_id)) or NumberSequence(0, 0)

    @staticmethod
    def stage_sequence(
        transaction: Transaction,
        organization_id: str,
        read: int,
        taken: int,
        unheld_at: int | None = None,
    ) -> None:
        """Take numbers ``read + 1`` to ``read + taken``; fails if another numberer took
        any of them first (no gaps, no twins). With ``unheld_at`` (an issuer numbering its
        own invoice without the lease), it also fails if anyone holds the lease at that
        moment: a holder's batch is never cut into. The lease's own attributes are left as
        they are."""
        condition = "attribute_not_exists(#value)" if read == 0 else "#value = :read"
        values: Item = {":taken": read + taken}
        if read:
            values[":read"] = read
        if unheld_at is not None:
            condition = f"({condition}) AND {_UNHELD}"
            values[":now"] = unheld_at
        transaction.update(
            {"PK": org_pk(organization_id), "SK": SEQUENCE},
            "SET #value = :taken, kind = :kind",
            condition=condition,
            values={**values, ":kind": "invoice_sequence"},
            names={"#value": "value"},
        )

    def take_lease(self, organization_id: str, owner: str, now_ms: int, held_until: int) -> bool:
        """Become the organization's numberer, unless someone holds an unexpired lease."""
        transaction = Transaction()
        transaction.update(
            {"PK": org_pk(organization_id), "SK": SEQUENCE},
            "SET held_until = :until, #owner = :owner, kind = :kind",
            condition=_UNHELD,
            values={
                ":until": held_until,
                ":owner": owner,
                ":now": now_ms,
                ":kind": "invoice_sequence",
            },
            names={"#owner": "owner"},
        )
        return self._commit_unless_raced(transaction)

    def release_lease(self, organization_id: str, owner: str) -> None:
        """Give the lease up, unless it expired and someone else took it meanwhile."""
        transaction = Transaction()
        transaction.update(
            {"PK": org_pk(organization_id), "SK": SEQUENCE},
            "REMOVE held_until, #owner",
            condition="#owner = :owner",
            values={":owner": owner},
            names={"#owner": "owner"},
        )
        self._commit_unless_raced(transaction)

    def _commit_unless_raced(self, transaction: Transaction) -> bool:
        try:
            self._db.commit(transaction)
        except ConcurrentUpdate:
            return False
        return True
