"""Subscriptions, invoices and payment retries: one repository each (access patterns:
the Store's, ``billow.adapters.dynamodb``; invoices waiting for their number and the
number sequence: ``billow.adapters.invoice_numbering``).

The due and in-flight indexes are sparse and sharded, and copy ids only: an object
entering or leaving one costs one write unit, and a scheduled run hands each entry back
to a worker that reads the object again from its organization's partition.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import get_args

from billow.adapters.listing import (
    ALL,
    Listing,
    ListRecords,
    Read,
    Repository,
    Tally,
    counter_key,
    list_attributes,
    listing_by_status,
    parser_of,
    stage_counts,
)
from billow.adapters.table import Item, Transaction, document, org_pk, packed
from billow.domain.invoices import Invoice, InvoiceStatus, PaymentStatus
from billow.domain.subscriptions import (
    DUE_INDEX_SHARDS,
    Subscription,
    SubscriptionStatus,
    due_shard,
)

AWAITING_PAYMENT_METHOD = frozenset({"no_payment_method", "no_payment_provider"})
"""Blocks a saved card lifts: it proves the customer is now reachable in Stripe too."""

DUE_SUFFIX = "~"
"""Sorts after every ``#…`` suffix, so ``GSI1SK <= now~`` includes everything due at ``now``."""


INVOICES = "INVOICES"
INVOICE_STATES = tuple(
    f"{status}.{payment}"
    for status, payment in product(get_args(InvoiceStatus), get_args(PaymentStatus))
)
"""Every (status, payment status) an invoice can be in: the partitions of the state lists."""


@dataclass(frozen=True)
class InvoiceSelection:
    """Invoices the keys can pick: of a customer (external id), in some states
    (``{status}.{payment_status}``), issued between two ``YYYY-MM-DD`` days; ``None``: any."""

    customer: str | None = None
    states: Sequence[str] | None = None
    issued_between: tuple[str, str] | None = None

    def sort_keys(self) -> tuple[str, str] | None:
        """Sort keys of invoices issued from the first day to the last, both included."""
        if self.issued_between is None:
            return None
        low, high = self.issued_between
        return low, f"{high}~"


def invoice_state(status: str, payment_status: str) -> str:
    return f"{status}.{payment_status}"


def invoice_listing(invoice: Invoice) -> Listing:
    """Lago lists invoices by issuing date, newest first, then by creation."""
    state = invoice_state(invoice.status, invoice.payment_status)
    customer = f"CUSTOMER#{invoice.external_customer_id}"
    return Listing(
        family=INVOICES,
        sort_key=f"{invoice.issuing_date}#{invoice.created_at}#{invoice.sequential_id:012d}",
        partitions={
            "GSI3": "",
            "GSI4": f"#{customer}",
            "GSI5": f"#STATE#{state}",
            "GSI6": f"#{customer}#STATE#{state}",
        },
        tallies=frozenset(
            {Tally("", ALL), Tally("", state), Tally(customer, ALL), Tally(customer, state)}
        ),
    )


SUBSCRIPTIONS = "SUBSCRIPTIONS"


def subscription_listing(subscription: Subscription) -> Listing:
    """Lago lists subscriptions newest first, always by status (``active`` unless asked),
    and by customer and plan: each combination is a partition and a count of its own.
    A period's renewal moves none of them; only a status, plan or customer change does."""
    return listing_by_status(
        SUBSCRIPTIONS,
        f"{subscription.created_at}#{subscription.lago_id}",
        f"CUSTOMER#{subscription.external_customer_id}",
        f"PLAN#{subscription.plan_code}",
        subscription.status,
        # By the plan's id too: a plan shows its active subscriptions, and its code can
        # change under them.
        Tally(plan_id_scope(subscription.plan_lago_id), subscription.status),
        # Stripe allows a customer so many subscriptions: those it bills are counted.
        *(
            [Tally(stripe_billed_scope(subscription.external_customer_id), subscription.status)]
            if subscription.billed_by == "stripe"
            else []
        ),
    )


def stripe_billed_scope(external_customer_id: str) -> str:
    return f"STRIPE_BILLED#CUSTOMER#{external_customer_id}"


def plan_id_scope(plan_lago_id: str) -> str:
    return f"PLAN_ID#{plan_lago_id}"


@dataclass(frozen=True)
class SubscriptionSelection:
    """Subscriptions the keys can pick: in some statuses, of a customer (external id),
    of a plan (code); ``None``: any customer or plan."""

    statuses: Sequence[str]
    customer: str | None = None
    plan: str | None = None

    def lists(self, organization_id: str) -> tuple[str, list[str], str]:
        """The list index, its partitions (one per status) and the counter scope."""
        scope = "#".join(
            part
            for part in (
                f"CUSTOMER#{self.customer}" if self.customer is not None else "",
                f"PLAN#{self.plan}" if self.plan is not None else "",
            )
            if part
        )
        index = {
            (False, False): "GSI3",
            (True, False): "GSI4",
            (False, True): "GSI5",
            (True, True): "GSI6",
        }[(self.customer is not None, self.plan is not None)]
        prefix = f"{org_pk(organization_id)}#{SUBSCRIPTIONS}" + (f"#{scope}" if scope else "")
        return index, [f"{prefix}#STATUS#{status}" for status in self.statuses], scope


def _due(
    db: ListRecords, index_prefix: str, now: str, attributes: str, index: str = "GSI1"
) -> Iterator[Item]:
    """Everything a sparse, sharded due index holds for ``now`` or earlier."""
    for shard in range(DUE_INDEX_SHARDS):
        yield from db.query(
            IndexName=index,
            KeyConditionExpression=f"{index}PK = :pk AND {index}SK <= :now",
            ExpressionAttributeValues={
                ":pk": f"{index_prefix}#{shard}",
                ":now": now + DUE_SUFFIX,
            },
            ProjectionExpression=attributes,
        )


def _subscription_key(organization_id: str, external_id: str, lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"SUBSCRIPTION#{external_id}#{lago_id}"}


def _invoice_key(organization_id: str, lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"INVOICE#{lago_id}"}


class SubscriptionRecords(Repository):
    @staticmethod
    def key(subscription: Subscription) -> Item:
        return _subscription_key(
            subscription.organization_id, subscription.external_id, subscription.lago_id
        )

    def item(self, subscription: Subscription) -> Item:
        item: Item = {
            **self.key(subscription),
            "kind": "subscription",
            "data": packed(subscription),
            "version": subscription.version,
            **list_attributes(subscription.organization_id, subscription_listing(subscription)),
        }
        if subscription.is_live and subscription.next_billing_at:
            # GSI2 copies ids only: moving to the next period rewrites a one-unit entry,
            # not the whole subscription.
            item["GSI2PK"] = f"BILLING_DUE#{due_shard(subscription.lago_id)}"
            # Then what billing it reads besides it (ids never hold ``#``): the worker
            # reads them all in one BatchGetItem.
            item["GSI2SK"] = (
                f"{subscription.next_billing_at}#{subscription.organization_id}"
                f"#{subscription.lago_id}#{subscription.plan_lago_id}"
                f"#{subscription.lago_customer_id}#{subscription.external_customer_id}"
            )
            item["organization_id"] = subscription.organization_id
            item["lago_id"] = subscription.lago_id
        return item

    def stage(
        self, transaction: Transaction, subscription: Subscription, before: Subscription | None
    ) -> None:
        """Stage a write that only succeeds over the subscription as the caller read it
        (``before``; None: new). Its counts move with it, when its listed state changes."""
        transaction.put_versioned(self.item(subscription), before.version if before else None)
        stage_counts(
            transaction,
            subscription.organization_id,
            subscription.lago_id,
            subscription_listing(before) if before else None,
            subscription_listing(subscription),
        )

    @staticmethod
    def stage_start(
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

    def list_for_external_id(self, organization_id: str, external_id: str) -> list[Subscription]:
        """Every subscription that carried this external id, oldest first."""
        subscriptions = [
            Subscription.model_validate(document(item))
            for item in self._db.query_prefix(
                org_pk(organization_id), f"SUBSCRIPTION#{external_id}#"
            )
        ]
        matching = [s for s in subscriptions if s.external_id == external_id]
        return sorted(matching, key=lambda s: (s.created_at, s.lago_id))

    @staticmethod
    def ref(organization_id: str, external_id: str, lago_id: str) -> Read[Subscription]:
        key = _subscription_key(organization_id, external_id, lago_id)
        return Read(key["PK"], key["SK"], parser_of(Subscription))

    def get(self, organization_id: str, external_id: str, lago_id: str) -> Subscription | None:
        return self._db.get(self.ref(organization_id, external_id, lago_id))

    def list_all(self, organization_id: str) -> Iterator[Subscription]:
        """Every subscription: for the few uses that must visit each (a plan's users)."""
        for item in self._db.query_prefix(org_pk(organization_id), "SUBSCRIPTION#"):
            yield Subscription.model_validate(document(item))

    def list_page(
        self, organization_id: str, selection: SubscriptionSelection, skip: int, take: int
    ) -> list[Subscription]:
        """Subscriptions ``skip`` to ``skip + take`` of a selection, newest first."""
        index, partitions, _ = selection.lists(organization_id)
        keys = self._db.page_keys(index, partitions, skip, take)
        return [Subscription.model_validate(document(item)) for item in self._db.get_items(keys)]

    def list_in(
        self, organization_id: str, selection: SubscriptionSelection
    ) -> Iterator[Subscription]:
        """Every subscription of a selection (a plan's live ones, say), newest first."""
        index, partitions, _ = selection.lists(organization_id)
        keys = self._db.every_key(index, partitions)
        for start in range(0, len(keys), 100):
            for item in self._db.get_items(keys[start : start + 100]):
                yield Subscription.model_validate(document(item))

    def count(self, organization_id: str, selection: SubscriptionSelection) -> int:
        _, _, scope = selection.lists(organization_id)
        return self._db.count(organization_id, SUBSCRIPTIONS, selection.statuses, scope)

    def count_active_by_plan(
        self, organization_id: str, plan_lago_ids: Sequence[str]
    ) -> dict[str, int]:
        """Active subscriptions of each plan, from their counters (one BatchGetItem)."""
        counts = self._db.scoped_counts(
            organization_id,
            [(SUBSCRIPTIONS, plan_id_scope(plan_id)) for plan_id in plan_lago_ids],
            "active",
        )
        return {scope.removeprefix("PLAN_ID#"): n for (_, scope), n in counts.items()}

    def count_by_plan(self, organization_id: str, plan_lago_id: str) -> dict[str, int]:
        """A plan's subscriptions by status, from its counter (one GetItem): by the plan's
        id, which is what subscriptions move between when they change plans."""
        key = counter_key(organization_id, SUBSCRIPTIONS, plan_id_scope(plan_lago_id), 0)
        item = self._db.get_item(key["PK"], key["SK"]) or {}
        return {status: int(str(item.get(status, 0))) for status in get_args(SubscriptionStatus)}

    @staticmethod
    def stage_stripe_billed_cap(
        transaction: Transaction, subscription: Subscription, maximum: int
    ) -> None:
        """Fail the transaction if it makes the customer's active Stripe-billed
        subscriptions more than ``maximum``."""
        key = counter_key(
            subscription.organization_id,
            SUBSCRIPTIONS,
            stripe_billed_scope(subscription.external_customer_id),
            0,
        )
        transaction.cap_count(key, "active", maximum)

    def count_stripe_billed(self, organization_id: str, external_customer_id: str) -> int:
        """The customer's live subscriptions Stripe bills, from their counter."""
        scope = stripe_billed_scope(external_customer_id)
        counts = self._db.scoped_counts(organization_id, [(SUBSCRIPTIONS, scope)], "active")
        return sum(counts.values())

    def list_due(self, now: str) -> Iterator[Item]:
        """Live subscriptions whose next billing time is at or before ``now``: each names
        its organization, external id (from its key; ids never hold ``#``) and id, and
        (entries written since they carry them) its plan and customer."""
        for item in _due(
            self._db, "BILLING_DUE", now, "organization_id, lago_id, SK, GSI2SK", index="GSI2"
        ):
            external_id = str(item["SK"]).removeprefix("SUBSCRIPTION#").rsplit("#", 1)[0]
            parts = str(item["GSI2SK"]).split("#")
            owners = (
                dict(
                    zip(
                        ("plan_lago_id", "lago_customer_id", "external_customer_id"),
                        parts[3:],
                        strict=True,
                    )
                )
                if len(parts) == 6
                else {}
            )
            yield {
                "organization_id": item["organization_id"],
                "lago_id": item["lago_id"],
                "external_id": external_id,
                **owners,
            }


class InvoiceRecords(Repository):
    def item(self, invoice: Invoice) -> Item:
        item: Item = {
            **_invoice_key(invoice.organization_id, invoice.lago_id),
            "kind": "invoice",
            "data": packed(invoice),
            "version": invoice.version,
            "payment_status": invoice.payment_status,
            **list_attributes(invoice.organization_id, invoice_listing(invoice)),
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

    def stage(self, transaction: Transaction, invoice: Invoice, before: Invoice | None) -> None:
        """New invoices must not exist yet (that is what makes billing exactly-once); a
        changed one must still be as read (``before``). Its counts move with it: nothing
        when its state stays, one small ADD on its customer's counter and one on a shard
        of the organization's when it is created or its state changes."""
        transaction.put_versioned(self.item(invoice), before.version if before else None)
        stage_counts(
            transaction,
            invoice.organization_id,
            invoice.lago_id,
            invoice_listing(before) if before else None,
            invoice_listing(invoice),
        )

    @staticmethod
    def ref(organization_id: str, lago_id: str) -> Read[Invoice]:
        key = _invoice_key(organization_id, lago_id)
        return Read(key["PK"], key["SK"], parser_of(Invoice))

    def get(self, organization_id: str, lago_id: str) -> Invoice | None:
        return self._db.get(self.ref(organization_id, lago_id))

    @staticmethod
    def _invoice_lists(
        organization_id: str, selection: InvoiceSelection
    ) -> tuple[str, list[str], str]:
        """The list index, its partitions and the counter scope of a selection."""
        customer, states = selection.customer, selection.states
        scope = f"CUSTOMER#{customer}" if customer is not None else ""
        prefix = f"{org_pk(organization_id)}#{INVOICES}" + (f"#{scope}" if scope else "")
        if states is None:
            return ("GSI4" if scope else "GSI3"), [prefix], scope
        return ("GSI6" if scope else "GSI5"), [f"{prefix}#STATE#{s}" for s in states], scope

    def list_page(
        self, organization_id: str, selection: InvoiceSelection, skip: int, take: int
    ) -> list[Invoice]:
        """Invoices ``skip`` to ``skip + take`` of a selection, newest first."""
        index, partitions, _ = self._invoice_lists(organization_id, selection)
        keys = self._db.page_keys(index, partitions, skip, take, selection.sort_keys())
        return [Invoice.model_validate(document(item)) for item in self._db.get_items(keys)]

    def count(self, organization_id: str, selection: InvoiceSelection) -> int:
        """Exact, from the counters; a date range has no counter, so its keys are counted."""
        index, partitions, scope = self._invoice_lists(organization_id, selection)
        sort_keys = selection.sort_keys()
        if sort_keys is not None:
            return self._db.count_keys(index, partitions, sort_keys)
        return self._db.count(organization_id, INVOICES, selection.states or [ALL], scope)

    def list_in(self, organization_id: str, selection: InvoiceSelection) -> Iterator[Invoice]:
        """Every invoice of a selection, newest first: for filters no key serves."""
        index, partitions, _ = self._invoice_lists(organization_id, selection)
        keys = self._db.every_key(index, partitions, selection.sort_keys())
        for start in range(0, len(keys), 100):
            for item in self._db.get_items(keys[start : start + 100]):
                yield Invoice.model_validate(document(item))

    def list_awaiting_payment_method(
        self, organization_id: str, customer_lago_id: str
    ) -> list[Invoice]:
        found = []
        for item in self._db.query_index(
            f"{org_pk(organization_id)}#AWAITING_PAYMENT_METHOD#{customer_lago_id}"
        ):
            invoice = self.get(organization_id, str(item["SK"]).removeprefix("INVOICE#"))
            if invoice is not None:
                found.append(invoice)
        return found

    def list_payments_in_flight(self, requested_before: str) -> Iterator[Item]:
        """Charge attempts requested at or before ``requested_before`` whose outcome is
        still unknown (each item names its organization and invoice)."""
        return _due(
            self._db,
            "PAYMENT_IN_FLIGHT",
            requested_before,
            "organization_id, lago_id",
            index="GSI2",
        )


class DunningRecords(Repository):
    """Payment retries planned for each invoice."""

    def get(self, organization_id: str, invoice_id: str) -> Item | None:
        return self._db.get_item(org_pk(organization_id), f"DUNNING#{invoice_id}")

    @staticmethod
    def stage(
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

    def list_due(self, now: str) -> Iterator[Item]:
        return _due(
            self._db, "DUNNING_DUE", now, "organization_id, invoice_id, after_attempt, retries_done"
        )
