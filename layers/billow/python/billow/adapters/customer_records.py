"""Customers, their payment methods and what orders their default one (access patterns:
the Store's, ``billow.adapters.dynamodb``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from billow.adapters.listing import (
    ALL,
    Listing,
    Read,
    Repository,
    Tally,
    list_attributes,
    parser_of,
    stage_counts,
    tax_scope,
)
from billow.adapters.table import (
    MAX_SORT_KEY_BYTES,
    Item,
    Transaction,
    document,
    org_pk,
    packed,
)
from billow.domain.customers import Customer, DefaultPaymentMethodState, PaymentMethod

CUSTOMERS = "CUSTOMERS"


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


def _payment_method_key(organization_id: str, customer_lago_id: str, lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"PAYMENT_METHOD#{customer_lago_id}#{lago_id}"}


def _key_of(method: PaymentMethod) -> Item:
    return _payment_method_key(method.organization_id, method.customer_lago_id, method.lago_id)


def _default_state_key(organization_id: str, customer_lago_id: str) -> Item:
    return {"PK": org_pk(organization_id), "SK": f"PAYMENT_DEFAULT#{customer_lago_id}"}


class CustomerRecords(Repository):
    @staticmethod
    def item(customer: Customer) -> Item:
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

    def stage(self, transaction: Transaction, customer: Customer, before: Customer | None) -> None:
        """Stage a customer write that only succeeds over the version the caller read
        (``before``; None: a new customer), with the counts it moves in the same
        transaction (a new customer; tax codes added or removed)."""
        transaction.put_versioned(self.item(customer), before.version if before else None)
        stage_counts(
            transaction,
            customer.organization_id,
            customer.lago_id,
            customer_listing(before) if before else None,
            customer_listing(customer),
        )

    @staticmethod
    def ref(organization_id: str, external_id: str) -> Read[Customer]:
        return Read(org_pk(organization_id), f"CUSTOMER#{external_id}", parser_of(Customer))

    def get(self, organization_id: str, external_id: str) -> Customer | None:
        return self._db.get(self.ref(organization_id, external_id))

    def get_many(self, organization_id: str, external_ids: Iterable[str]) -> list[Customer]:
        """The customers of these external ids that exist (one BatchGetItem per hundred)."""
        keys = [
            {"PK": org_pk(organization_id), "SK": f"CUSTOMER#{external_id}"}
            for external_id in dict.fromkeys(external_ids)
            if len(external_id.encode()) < MAX_SORT_KEY_BYTES - len("CUSTOMER#")
        ]
        return [Customer.model_validate(document(item)) for item in self._db.get_items(keys)]

    def list_all(self, organization_id: str) -> Iterator[Customer]:
        """Every customer (by external id): for sweeps that must visit each one."""
        for item in self._db.query_prefix(org_pk(organization_id), "CUSTOMER#"):
            yield Customer.model_validate(document(item))

    def list_page(self, organization_id: str, skip: int, take: int) -> list[Customer]:
        """Customers ``skip`` to ``skip + take``, newest first."""
        partition = f"{org_pk(organization_id)}#{CUSTOMERS}"
        keys = self._db.page_keys("GSI3", [partition], skip, take)
        return [Customer.model_validate(document(item)) for item in self._db.get_items(keys)]

    def count(self, organization_id: str) -> int:
        return self._db.count(organization_id, CUSTOMERS, [ALL])

    def get_by_stripe_id(self, organization_id: str, stripe_customer_id: str) -> Customer | None:
        for item in self._db.query_index(
            f"{org_pk(organization_id)}#STRIPE_CUSTOMER#{stripe_customer_id}"
        ):
            return self.get(organization_id, str(item["GSI1SK"]))
        return None

    def delete(self, customer: Customer, payment_methods: Sequence[PaymentMethod]) -> None:
        """Delete the customer with its ``payment_methods`` (as read) and default state."""
        transaction = Transaction()
        transaction.delete(
            {"PK": org_pk(customer.organization_id), "SK": f"CUSTOMER#{customer.external_id}"},
            condition="attribute_exists(PK)",  # deleted once, uncounted once
        )
        for method in payment_methods:
            transaction.delete(_key_of(method))
        transaction.delete(_default_state_key(customer.organization_id, customer.lago_id))
        stage_counts(
            transaction,
            customer.organization_id,
            customer.lago_id,
            customer_listing(customer),
            None,
        )
        self._db.commit(transaction)


class PaymentMethodRecords(Repository):
    """A customer's payment methods, and the state that orders its default one."""

    @staticmethod
    def item(method: PaymentMethod) -> Item:
        return {
            **_key_of(method),
            "kind": "payment_method",
            "GSI1PK": (
                f"{org_pk(method.organization_id)}#STRIPE_PAYMENT_METHOD#{method.provider_method_id}"
            ),
            "GSI1SK": method.lago_id,
            "data": packed(method),
        }

    @staticmethod
    def ref(organization_id: str, customer_lago_id: str, lago_id: str) -> Read[PaymentMethod]:
        """One of the customer's payment methods, by its lago_id."""
        key = _payment_method_key(organization_id, customer_lago_id, lago_id)
        return Read(key["PK"], key["SK"], parser_of(PaymentMethod))

    @staticmethod
    def default_state_ref(
        organization_id: str, customer_lago_id: str
    ) -> Read[DefaultPaymentMethodState]:
        """The customer's state as stored (None from a read: no change recorded yet)."""
        key = _default_state_key(organization_id, customer_lago_id)
        return Read(key["PK"], key["SK"], parser_of(DefaultPaymentMethodState))

    def list_for(self, customer: Customer) -> list[PaymentMethod]:
        """Read consistently: a change decided on this list is written only if the customer's
        DefaultPaymentMethodState, read before it, is unchanged."""
        items = self._db.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": org_pk(customer.organization_id),
                ":prefix": f"PAYMENT_METHOD#{customer.lago_id}#",
            },
            ConsistentRead=True,
        )
        methods = [PaymentMethod.model_validate(document(item)) for item in items]
        return sorted(methods, key=lambda method: (method.created_at, method.lago_id), reverse=True)

    def get_by_stripe_id(
        self, organization_id: str, stripe_payment_method_id: str
    ) -> PaymentMethod | None:
        key = f"{org_pk(organization_id)}#STRIPE_PAYMENT_METHOD#{stripe_payment_method_id}"
        for item in self._db.query_index(key):
            full = self._db.get_item(item["PK"], item["SK"])
            return PaymentMethod.model_validate(document(full)) if full else None
        return None

    def stage_replacement(
        self,
        transaction: Transaction,
        before: Sequence[PaymentMethod],
        after: Sequence[PaymentMethod],
    ) -> None:
        """Stage the difference between two views of a customer's payment methods."""
        kept = {method.lago_id for method in after}
        for method in before:
            if method.lago_id not in kept:
                transaction.delete(_key_of(method))
        previous = {method.lago_id: method for method in before}
        for method in after:
            if previous.get(method.lago_id) != method:
                transaction.put(self.item(method))

    def get_default_state(self, customer: Customer) -> DefaultPaymentMethodState:
        """The customer's state, or a fresh one (version 0) before its first change."""
        stored = self._db.get(self.default_state_ref(customer.organization_id, customer.lago_id))
        return stored or DefaultPaymentMethodState(
            organization_id=customer.organization_id, customer_lago_id=customer.lago_id
        )

    @staticmethod
    def stage_default_state(
        transaction: Transaction, state: DefaultPaymentMethodState, expected_version: int
    ) -> None:
        """Stage the state; the transaction fails if another change got there first."""
        item = {
            **_default_state_key(state.organization_id, state.customer_lago_id),
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
