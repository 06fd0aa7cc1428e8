"""The catalog's repositories: taxes, plans, add-ons, coupons and applied coupons (access
patterns: the Store's, ``billow.adapters.dynamodb``).

Each object is a JSON document in ``data`` with its optimistic-locking ``version`` (and a
coupon's ``applied_count``) beside it as plain attributes, so a grant can bump them
without rewriting the document. Codes are unique per organization through conditional
writes: taxes and add-ons are keyed by code; plans and coupons by id, with a code
pointer that a delete removes so the code can be reused while the object stays readable.

Lists (``GET /plans``, ``/add_ons``, ``/coupons``, ``/taxes``) read only their page: each
live object has an entry in the keys-only list index GSI3, partition
``{org}#{PLANS|ADD_ONS|COUPONS|TAXES}``, sort key ``{created_at}#{lago_id}``, and its
family's count is kept in counters written with it (``billow.adapters.listing``). A
deleted plan or coupon stays readable by id but leaves its list.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from billow.adapters.customer_records import CUSTOMERS
from billow.adapters.listing import (
    ALL,
    Listing,
    ListRecords,
    Read,
    Repository,
    Tally,
    counter_key,
    list_attributes,
    list_partition,
    listing_by_status,
    stage_counts,
    tax_scope,
)
from billow.adapters.organization_records import DEFAULT_TAXES, stage_hint
from billow.adapters.table import Item, Transaction, document, org_pk, packed
from billow.domain.catalog import AddOn, AppliedCoupon, Coupon, Plan, Tax, application_order

M = TypeVar("M", bound=BaseModel)

PLANS, ADD_ONS, COUPONS, TAXES = "PLANS", "ADD_ONS", "COUPONS", "TAXES"
APPLIED_COUPONS = "APPLIED_COUPONS"


def applied_coupon_listing(applied: AppliedCoupon) -> Listing:
    """Lago lists applied coupons newest first, by status, customer and coupon code (a
    granted coupon keeps its code): each combination is a partition and a count."""
    return listing_by_status(
        APPLIED_COUPONS,
        f"{applied.applied_at or applied.created_at}#{applied.lago_id}",
        f"CUSTOMER#{applied.lago_customer_id}",
        f"CODE#{applied.coupon_code}",
        applied.status,
    )


_OUTSIDE_DOCUMENT = frozenset({"version", "applied_count"})


def catalog_listing(family: str, obj: Any) -> Listing | None:
    """Where a catalog object is listed: nowhere once deleted. Plans and add-ons also
    count in their taxes' counters (``TAX#{code}``), which a tax shows as its users."""
    if getattr(obj, "deleted_at", None) is not None:
        return None
    return Listing(
        family=family,
        sort_key=f"{obj.created_at}#{obj.lago_id}",
        partitions={"GSI3": ""},
        tallies=frozenset(
            {Tally("", ALL), *(Tally(tax_scope(code), ALL) for code in _tax_codes(obj))}
        ),
    )


def _tax_codes(obj: Any) -> set[str]:
    return set(getattr(obj, "tax_codes", None) or ()) if isinstance(obj, Plan | AddOn) else set()


def _item(
    organization_id: str, sk: str, kind: str, obj: Any, family: str | None, **extra: Any
) -> Item:
    """The stored item; ``family`` names the list it appears in (None: not listed)."""
    listing = catalog_listing(family, obj) if family else None
    return {
        "PK": org_pk(organization_id),
        "SK": sk,
        "kind": kind,
        "data": packed(obj, exclude=set(_OUTSIDE_DOCUMENT)),
        "version": obj.version,
        **(list_attributes(organization_id, listing) if listing else {}),
        **extra,
    }


def _stage_listed(
    transaction: Transaction, family: str, obj: Any, before: Any | None, after: Any | None
) -> None:
    """Move the family's count with one object's change (None: absent)."""
    stage_counts(
        transaction,
        obj.organization_id,
        obj.lago_id,
        catalog_listing(family, before) if before is not None else None,
        catalog_listing(family, after) if after is not None else None,
    )


def load(model: type[M], item: Item) -> M:
    fields = {name: int(str(item[name])) for name in _OUTSIDE_DOCUMENT if name in item}
    return model.model_validate({**document(item), **fields})


def _stage_pointer(
    transaction: Transaction,
    organization_id: str,
    prefix: str,
    lago_id: str,
    code: str | None,
    previous_code: str | None,
) -> None:
    """Move the code → id pointer: ``None`` means no pointer (new object, or deleted)."""
    if code == previous_code:
        return
    if previous_code is not None:
        transaction.delete(
            {"PK": org_pk(organization_id), "SK": f"{prefix}{previous_code}"},
            condition="lago_id = :id",
            values={":id": lago_id},
        )
    if code is not None:
        transaction.put(
            {
                "PK": org_pk(organization_id),
                "SK": f"{prefix}{code}",
                "kind": "code_pointer",
                "lago_id": lago_id,
            },
            condition="attribute_not_exists(PK)",
        )


def stage_coded(
    transaction: Transaction,
    obj: Any,
    before: Any | None,
    *,
    kind: str,
    family: str,
    prefix: str,
) -> None:
    """Stage the write of an object kept by id (``{prefix}#{lago_id}``), listed in
    ``family``, and its code pointer (``{prefix}_CODE#{code}``): created with the
    object, moved when the code changes, removed when the object is deleted (it stays
    readable by id). Plans and billable metrics are kept so."""
    transaction.put_versioned(
        _item(obj.organization_id, f"{prefix}#{obj.lago_id}", kind, obj, family),
        before.version if before else None,
    )
    _stage_listed(transaction, family, obj, before, obj)
    _stage_pointer(
        transaction,
        obj.organization_id,
        f"{prefix}_CODE#",
        obj.lago_id,
        obj.code if obj.deleted_at is None else None,
        before.code if before is not None and before.deleted_at is None else None,
    )


def _stage_keyed(
    transaction: Transaction, obj: Any, before: Any | None, *, kind: str, family: str, prefix: str
) -> None:
    """Stage the write of an object keyed by its code (``{prefix}#{code}``), listed in
    ``family``: created, replaced over the version read, or renamed (the old key goes,
    the new one must be free). Taxes and add-ons are kept so."""
    item = _item(obj.organization_id, f"{prefix}#{obj.code}", kind, obj, family)
    if before is not None and before.code != obj.code:
        _stage_keyed_removal(transaction, before, prefix)
        transaction.put_versioned(item, None)
    else:
        transaction.put_versioned(item, before.version if before else None)
    _stage_listed(transaction, family, obj, before, obj)


def _stage_keyed_delete(transaction: Transaction, obj: Any, *, family: str, prefix: str) -> None:
    _stage_keyed_removal(transaction, obj, prefix)
    _stage_listed(transaction, family, obj, obj, None)


def _stage_keyed_removal(transaction: Transaction, obj: Any, prefix: str) -> None:
    """The object's item goes, only while it is at the version read."""
    transaction.delete(
        {"PK": org_pk(obj.organization_id), "SK": f"{prefix}#{obj.code}"},
        condition="version = :expected",
        values={":expected": obj.version},
    )


def _page(
    db: ListRecords, organization_id: str, family: str, model: type[M], skip: int, take: int
) -> tuple[list[M], int]:
    """Objects ``skip`` to ``skip + take`` of a family's list, newest first, and how
    many it holds."""
    keys = db.page_keys("GSI3", [list_partition(organization_id, family, "")], skip, take)
    page = [load(model, item) for item in db.get_items(keys)]
    return page, db.count(organization_id, family, [ALL])


def _catalog(db: ListRecords, organization_id: str, prefix: str) -> Iterator[Item]:
    """Consistent, so an object is usable the moment its creation was answered."""
    return db.query(
        KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
        ExpressionAttributeValues={":pk": org_pk(organization_id), ":prefix": prefix},
        ConsistentRead=True,
    )


def _find(db: ListRecords, organization_id: str, sk: str) -> Item | None:
    return db.get_item(org_pk(organization_id), sk)


def _stage_default_taxes(
    transaction: Transaction, tax: Tax, before: Tax | None, after: Tax | None
) -> None:
    """Count the organization's default taxes (its billing hint) as they change."""
    moved = int(bool(after and after.applied_to_organization)) - int(
        bool(before and before.applied_to_organization)
    )
    if moved:
        stage_hint(
            transaction, tax.organization_id, f"ADD {DEFAULT_TAXES} :moved", {":moved": moved}
        )


class TaxRecords(Repository):
    def list_page(self, organization_id: str, skip: int, take: int) -> tuple[list[Tax], int]:
        return _page(self._db, organization_id, TAXES, Tax, skip, take)

    def get(self, organization_id: str, code: str) -> Tax | None:
        item = _find(self._db, organization_id, f"TAX#{code}")
        return load(Tax, item) if item else None

    def list_all(self, organization_id: str) -> list[Tax]:
        return [load(Tax, item) for item in _catalog(self._db, organization_id, "TAX#")]

    def get_many(self, organization_id: str, codes: Iterable[str]) -> list[Tax]:
        """The taxes named, in the order named; codes of deleted taxes are skipped. One
        Query: an organization has few taxes, fewer than a BatchGetItem round trip costs."""
        wanted = list(dict.fromkeys(codes))
        if not wanted:
            return []
        known = {tax.code: tax for tax in self.list_all(organization_id)}
        return [known[code] for code in wanted if code in known]

    def list_organization_defaults(self, organization_id: str) -> list[Tax]:
        """Taxes for customers without tax codes of their own."""
        taxes = [tax for tax in self.list_all(organization_id) if tax.applied_to_organization]
        return sorted(taxes, key=lambda tax: (tax.created_at, tax.code))

    def stage(self, transaction: Transaction, tax: Tax, before: Tax | None) -> None:
        _stage_keyed(transaction, tax, before, kind="tax", family=TAXES, prefix="TAX")
        _stage_default_taxes(transaction, tax, before, tax)

    def stage_delete(self, transaction: Transaction, tax: Tax) -> None:
        _stage_keyed_delete(transaction, tax, family=TAXES, prefix="TAX")
        _stage_default_taxes(transaction, tax, tax, None)

    def count_users(
        self, organization_id: str, codes: Sequence[str], consistent: bool = False
    ) -> dict[str, dict[str, int]]:
        """How many customers, plans and add-ons carry each tax, from the counters their
        writes keep (one BatchGetItem; ``consistent`` for a write that acts on them)."""
        families = {"customers_count": CUSTOMERS, "plans_count": PLANS, "add_ons_count": ADD_ONS}
        counts = self._db.scoped_counts(
            organization_id,
            [(family, tax_scope(code)) for code in codes for family in families.values()],
            ALL,
            consistent=consistent,
        )
        return {
            code: {field: counts[(family, tax_scope(code))] for field, family in families.items()}
            for code in codes
        }


class PlanRecords(Repository):
    def list_page(self, organization_id: str, skip: int, take: int) -> tuple[list[Plan], int]:
        return _page(self._db, organization_id, PLANS, Plan, skip, take)

    def get(self, organization_id: str, code: str) -> Plan | None:
        """The live plan with this code (a deleted plan has given its code up)."""
        pointer = _find(self._db, organization_id, f"PLAN_CODE#{code}")
        plan = self.get_by_id(organization_id, str(pointer["lago_id"])) if pointer else None
        return plan if plan is not None and plan.deleted_at is None else None

    @staticmethod
    def ref_by_id(organization_id: str, lago_id: str) -> Read[Plan]:
        """Deleted plans included: subscriptions and invoices refer to plans by id."""
        return Read(org_pk(organization_id), f"PLAN#{lago_id}", functools.partial(load, Plan))

    def get_by_id(self, organization_id: str, lago_id: str) -> Plan | None:
        return self._db.get(self.ref_by_id(organization_id, lago_id))

    def list_with_deleted(self, organization_id: str) -> list[Plan]:
        """Live and deleted plans."""
        return [load(Plan, item) for item in _catalog(self._db, organization_id, "PLAN#")]

    def list_all(self, organization_id: str) -> list[Plan]:
        return [plan for plan in self.list_with_deleted(organization_id) if plan.deleted_at is None]

    def stage(self, transaction: Transaction, plan: Plan, before: Plan | None) -> None:
        stage_coded(transaction, plan, before, kind="plan", family=PLANS, prefix="PLAN")


class AddOnRecords(Repository):
    def list_page(self, organization_id: str, skip: int, take: int) -> tuple[list[AddOn], int]:
        return _page(self._db, organization_id, ADD_ONS, AddOn, skip, take)

    def get(self, organization_id: str, code: str) -> AddOn | None:
        item = _find(self._db, organization_id, f"ADD_ON#{code}")
        return load(AddOn, item) if item else None

    def list_all(self, organization_id: str) -> list[AddOn]:
        return [load(AddOn, item) for item in _catalog(self._db, organization_id, "ADD_ON#")]

    def stage(self, transaction: Transaction, add_on: AddOn, before: AddOn | None) -> None:
        _stage_keyed(transaction, add_on, before, kind="add_on", family=ADD_ONS, prefix="ADD_ON")

    def stage_delete(self, transaction: Transaction, add_on: AddOn) -> None:
        _stage_keyed_delete(transaction, add_on, family=ADD_ONS, prefix="ADD_ON")


class CouponRecords(Repository):
    def list_page(self, organization_id: str, skip: int, take: int) -> tuple[list[Coupon], int]:
        return _page(self._db, organization_id, COUPONS, Coupon, skip, take)

    def get(self, organization_id: str, code: str) -> Coupon | None:
        """The coupon that holds this code now (a deleted coupon has given it up)."""
        pointer = _find(self._db, organization_id, f"COUPON_CODE#{code}")
        coupon = self.get_by_id(organization_id, str(pointer["lago_id"])) if pointer else None
        return coupon if coupon is not None and coupon.deleted_at is None else None

    def get_by_id(self, organization_id: str, lago_id: str) -> Coupon | None:
        item = _find(self._db, organization_id, f"COUPON#{lago_id}")
        return load(Coupon, item) if item else None

    def list_with_deleted(self, organization_id: str) -> list[Coupon]:
        """Live and deleted coupons."""
        return [load(Coupon, item) for item in _catalog(self._db, organization_id, "COUPON#")]

    def stage(self, transaction: Transaction, coupon: Coupon, before: Coupon | None) -> None:
        """Stage a coupon write and its code pointer, as for plans. The write also expects
        the grant count read, so terms cannot change under a grant made meanwhile."""
        item = _item(
            coupon.organization_id,
            f"COUPON#{coupon.lago_id}",
            "coupon",
            coupon,
            COUPONS,
            applied_count=coupon.applied_count,
        )
        _stage_listed(transaction, COUPONS, coupon, before, coupon)
        if before is None:
            transaction.put(item, condition="attribute_not_exists(PK)")
        else:
            transaction.put(
                item,
                condition="version = :expected AND applied_count = :granted",
                values={":expected": before.version, ":granted": before.applied_count},
            )
        _stage_pointer(
            transaction,
            coupon.organization_id,
            "COUPON_CODE#",
            coupon.lago_id,
            coupon.code if coupon.deleted_at is None else None,
            before.code if before is not None and before.deleted_at is None else None,
        )

    def stage_grant(self, transaction: Transaction, coupon: Coupon) -> None:
        """Count a grant, only while the coupon is as read: an edit or deletion since then
        cancels the transaction. Grants of a non-reusable coupon also bump its version, so
        two of them never commit side by side; grants of a reusable one run in parallel."""
        bump = "" if coupon.reusable else "SET version = :next "
        transaction.update(
            {"PK": org_pk(coupon.organization_id), "SK": f"COUPON#{coupon.lago_id}"},
            f"{bump}ADD applied_count :one",
            condition="version = :expected",
            values={
                ":one": 1,
                ":expected": coupon.version,
                **({} if coupon.reusable else {":next": coupon.version + 1}),
            },
        )

    def get_many_by_id(self, organization_id: str, lago_ids: Iterable[str]) -> list[Coupon]:
        keys = [
            {"PK": org_pk(organization_id), "SK": f"COUPON#{lago_id}"}
            for lago_id in dict.fromkeys(lago_ids)
        ]
        return [load(Coupon, item) for item in self._db.get_items(keys)]


class AppliedCouponRecords(Repository):
    def get(
        self, organization_id: str, customer_lago_id: str, lago_id: str
    ) -> AppliedCoupon | None:
        item = _find(self._db, organization_id, f"APPLIED_COUPON#{customer_lago_id}#{lago_id}")
        return load(AppliedCoupon, item) if item else None

    def list_for_customer(self, organization_id: str, customer_lago_id: str) -> list[AppliedCoupon]:
        """Active and terminated, oldest first."""
        items = _catalog(self._db, organization_id, f"APPLIED_COUPON#{customer_lago_id}#")
        found = [load(AppliedCoupon, item) for item in items]
        return sorted(found, key=lambda applied: (applied.created_at, applied.lago_id))

    def list_all(self, organization_id: str) -> list[AppliedCoupon]:
        found = [
            load(AppliedCoupon, item)
            for item in _catalog(self._db, organization_id, "APPLIED_COUPON#")
        ]
        return sorted(found, key=lambda applied: (applied.created_at, applied.lago_id))

    def list_page(
        self,
        organization_id: str,
        customer_lago_id: str | None,
        statuses: Sequence[str],
        coupon_codes: Sequence[str],
        skip: int,
        take: int,
    ) -> tuple[list[AppliedCoupon], int]:
        """Applied coupons ``skip`` to ``skip + take`` of a selection, newest first, and
        how many it holds: from the partitions and counters of its customer (if any), its
        statuses and its coupon codes (if any)."""
        customer = f"#CUSTOMER#{customer_lago_id}" if customer_lago_id is not None else ""
        codes = [f"#CODE#{code}" for code in dict.fromkeys(coupon_codes)] or [""]
        index = {(False, False): "GSI3", (True, False): "GSI4", (False, True): "GSI5"}.get(
            (bool(customer), bool(codes[0])), "GSI6"
        )
        partitions = [
            list_partition(organization_id, APPLIED_COUPONS, f"{customer}{code}#STATUS#{status}")
            for code in codes
            for status in statuses
        ]
        keys = self._db.page_keys(index, partitions, skip, take)
        page = [load(AppliedCoupon, item) for item in self._db.get_items(keys)]
        total = sum(
            self._db.count(
                organization_id, APPLIED_COUPONS, statuses, scope=f"{customer}{code}"[1:]
            )
            for code in codes
        )
        return page, total

    @staticmethod
    def ref_active_count(organization_id: str, customer_lago_id: str) -> Read[int]:
        """How many active coupons the customer has, from the counter their writes keep:
        read with a worker's other reads, it spares the Query when there are none."""
        key = counter_key(organization_id, APPLIED_COUPONS, f"CUSTOMER#{customer_lago_id}", shard=0)
        return Read(key["PK"], key["SK"], lambda item: int(str(item.get("active", 0))))

    def list_active(self, organization_id: str, customer_lago_id: str) -> list[AppliedCoupon]:
        """A customer's active coupons in the order invoices use them (one Query)."""
        return application_order(
            applied
            for applied in self.list_for_customer(organization_id, customer_lago_id)
            if applied.status == "active"
        )

    def stage(
        self,
        transaction: Transaction,
        applied_coupon: AppliedCoupon,
        before: AppliedCoupon | None,
    ) -> None:
        """Stage a write that only succeeds over the version the caller read (``before``;
        ``None``: a new one), with the counts a new one or a status change moves."""
        listing = applied_coupon_listing(applied_coupon)
        transaction.put_versioned(
            _item(
                applied_coupon.organization_id,
                f"APPLIED_COUPON#{applied_coupon.lago_customer_id}#{applied_coupon.lago_id}",
                "applied_coupon",
                applied_coupon,
                family=None,
                **list_attributes(applied_coupon.organization_id, listing),
            ),
            before.version if before else None,
        )
        if before is None or before.status != applied_coupon.status:
            stage_counts(
                transaction,
                applied_coupon.organization_id,
                applied_coupon.lago_id,
                applied_coupon_listing(before) if before else None,
                listing,
            )
