"""Lists that read only the page they show, with exact counts kept beside the items.

Each listed object carries, besides its own keys, one entry in each list index it belongs
to (``GSI3``…``GSI6``, keys only: an entry costs one write unit, and DynamoDB rewrites it
only when its key changes). An entry's partition names the list (``{org}#INVOICES``,
``{org}#INVOICES#CUSTOMER#{id}``, ``{org}#INVOICES#STATE#finalized.pending``…) and its sort
key orders it, oldest first, so a page is a Query read backwards. Page N reads the index
keys of the pages before it (a few bytes each), then only its own items with one
BatchGetItem.

Counts come from counters written in the same transaction as the items they count, so a
failed write moves no counter. A count over the whole organization is spread over
``COUNTER_SHARDS`` small items (``PK={org} SK=COUNTER#{family}#SHARD#{nn}``, the shard
picked from the object's id) so that a billing day's concurrent invoices do not all
update one item; reading it is one Query of those few items. A count scoped to one owner
(a customer's invoices) is one small item, ``COUNTER#{family}#{scope}``. Each counter item
holds several named counts (``all``, ``finalized.pending``…), so one object change is at
most one UpdateItem per counter item, whatever number of counts it moves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from billow.adapters.table import (
    MAX_SORT_KEY_BYTES,
    Item,
    TableBase,
    Transaction,
    document,
    org_pk,
)

LIST_INDEXES = ("GSI3", "GSI4", "GSI5", "GSI6")
COUNTER_SHARDS = 16
"""Write spread of an organization-wide count against the size of its read (one Query
of this many items of a few dozen bytes: one read unit)."""
ALL = "all"
"""The count every listed object adds one to."""
BATCH_GET_MAX = 100

T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")
W = TypeVar("W")
X = TypeVar("X")
Y = TypeVar("Y")
M = TypeVar("M", bound=BaseModel)
Parsed_co = TypeVar("Parsed_co", covariant=True)
"""What a ``Read`` yields. Covariant: a read of an ``Invoice`` is a read of an ``Invoice |
None``, which is what mypy asks for when ``read``'s answer is unpacked into variables."""


@dataclass(frozen=True)
class Read(Generic[Parsed_co]):
    """One item a worker needs, and what it becomes: repositories hand these out so a
    worker can fetch several entities in one BatchGetItem (``ListRecords.read``) rather
    than one GetItem each, which is a request and a round trip per entity."""

    pk: str
    sk: str
    parse: Callable[[Item], Parsed_co]


@dataclass(frozen=True, order=True)
class Tally:
    """One count an object adds one to: ``scope`` "" is the organization's sharded
    counter, any other scope a counter item of its own (``CUSTOMER#{external_id}``)."""

    scope: str
    name: str


@dataclass(frozen=True)
class Listing:
    """Where one object appears in its family's lists and what it counts in."""

    family: str
    sort_key: str
    """Orders the lists, oldest first (pages read it backwards: newest first)."""
    partitions: Mapping[str, str] = field(default_factory=dict)
    """List index → the partition's suffix after ``{org}#{family}``."""
    tallies: frozenset[Tally] = frozenset()


def listing_by_status(
    family: str, sort_key: str, first: str, second: str, status: str, *extra: Tally
) -> Listing:
    """A list kept by status, as Lago filters it, and by two owners (``CUSTOMER#…`` and a
    plan or coupon code): one partition and one count for each combination, in GSI3 (status
    only) to GSI6 (both owners). ``extra`` counts add to the status's."""
    return Listing(
        family=family,
        sort_key=sort_key,
        partitions={
            "GSI3": f"#STATUS#{status}",
            "GSI4": f"#{first}#STATUS#{status}",
            "GSI5": f"#{second}#STATUS#{status}",
            "GSI6": f"#{first}#{second}#STATUS#{status}",
        },
        tallies=frozenset(
            {
                Tally("", status),
                Tally(first, status),
                Tally(second, status),
                Tally(f"{first}#{second}", status),
                *extra,
            }
        ),
    )


def tax_scope(code: str) -> str:
    """The counter scope of the objects carrying a tax, which the tax shows as its users."""
    return f"TAX#{code}"


def list_partition(organization_id: str, family: str, suffix: str) -> str:
    return f"{org_pk(organization_id)}#{family}{suffix}"


def list_attributes(organization_id: str, listing: Listing) -> Item:
    """The index keys to store on the object's item."""
    attributes: Item = {}
    for index, suffix in listing.partitions.items():
        attributes[f"{index}PK"] = list_partition(organization_id, listing.family, suffix)
        attributes[f"{index}SK"] = listing.sort_key
    return attributes


def shard_of(object_id: str) -> int:
    return int(hashlib.sha256(object_id.encode()).hexdigest()[:8], 16) % COUNTER_SHARDS


def counter_key(organization_id: str, family: str, scope: str, shard: int) -> Item:
    # A scope names up to two ids of 512 bytes each; DynamoDB's sort keys stop at 1024.
    if len(scope.encode()) > 256:
        scope = "SHA256#" + hashlib.sha256(scope.encode()).hexdigest()
    sk = f"COUNTER#{family}#SHARD#{shard:02d}" if not scope else f"COUNTER#{family}#{scope}"
    return {"PK": org_pk(organization_id), "SK": sk}


def stage_counts(
    transaction: Transaction,
    organization_id: str,
    object_id: str,
    before: Listing | None,
    after: Listing | None,
) -> None:
    """Stage the counter changes of one object going from ``before`` to ``after`` (None:
    absent): one ADD per counter item whose counts move, nothing when none moves."""
    reference = after or before
    if reference is None:
        return
    old = before.tallies if before else frozenset()
    new = after.tallies if after else frozenset()
    deltas: dict[str, dict[str, int]] = {}
    for tally in old - new:
        deltas.setdefault(tally.scope, {})[tally.name] = -1
    for tally in new - old:
        deltas.setdefault(tally.scope, {})[tally.name] = 1
    for scope, moves in sorted(deltas.items()):
        key = counter_key(organization_id, reference.family, scope, shard_of(object_id))
        transaction.add_counts(key, moves)


def parser_of(model: type[M]) -> Callable[[Item], M]:
    """How an item whose whole object is its ``data`` document becomes ``model``."""

    def parse(item: Item) -> M:
        return model.model_validate(document(item))

    return parse


class ListRecords(TableBase):
    """The table with reads of pages and counts: what every repository reads through."""

    def get(self, read: Read[T]) -> T | None:
        """One entity (GetItem, strongly consistent), or None."""
        item = self.get_item(read.pk, read.sk)
        return read.parse(item) if item else None

    @overload
    def read(self, a: Read[T], b: Read[U], /) -> tuple[T | None, U | None]: ...
    @overload
    def read(
        self, a: Read[T], b: Read[U], c: Read[V], /
    ) -> tuple[T | None, U | None, V | None]: ...
    @overload
    def read(
        self, a: Read[T], b: Read[U], c: Read[V], d: Read[W], /
    ) -> tuple[T | None, U | None, V | None, W | None]: ...
    @overload
    def read(
        self, a: Read[T], b: Read[U], c: Read[V], d: Read[W], e: Read[X], /
    ) -> tuple[T | None, U | None, V | None, W | None, X | None]: ...
    @overload
    def read(
        self, a: Read[T], b: Read[U], c: Read[V], d: Read[W], e: Read[X], f: Read[Y], /
    ) -> tuple[T | None, U | None, V | None, W | None, X | None, Y | None]: ...
    def read(self, *reads: Read[Any]) -> tuple[Any, ...]:
        """Several entities in one strongly consistent BatchGetItem, each None if absent:
        as fresh as the GetItems it replaces, for one request instead of one each."""
        # A key too long to be one names nothing (as in ``get_item``).
        keys = list(
            dict.fromkeys(
                (read.pk, read.sk) for read in reads if len(read.sk.encode()) <= MAX_SORT_KEY_BYTES
            )
        )
        items = self.get_items([{"PK": pk, "SK": sk} for pk, sk in keys], consistent=True)
        found = {(str(item["PK"]), str(item["SK"])): item for item in items}
        return tuple(
            read.parse(found[(read.pk, read.sk)]) if (read.pk, read.sk) in found else None
            for read in reads
        )

    def count(
        self, organization_id: str, family: str, names: Iterable[str], scope: str = ""
    ) -> int:
        """The sum of ``names`` (disjoint counts) over the family's counter for ``scope``."""
        wanted = list(dict.fromkeys(names))
        if scope:
            key = counter_key(organization_id, family, scope, 0)
            item = self.get_item(key["PK"], key["SK"])
            items = [item] if item else []
        else:
            items = list(
                self.query(
                    KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
                    ExpressionAttributeValues={
                        ":pk": org_pk(organization_id),
                        ":prefix": f"COUNTER#{family}#SHARD#",
                    },
                    ConsistentRead=True,
                )
            )
        return sum(int(str(item.get(name, 0))) for item in items for name in wanted)

    def scoped_counts(
        self,
        organization_id: str,
        scopes: Iterable[tuple[str, str]],
        name: str,
        consistent: bool = False,
    ) -> dict[tuple[str, str], int]:
        """Count ``name`` of several (family, scope) counters at once (one BatchGetItem per
        hundred): what a page of objects shows of their users (a tax's customers…)."""
        wanted = list(dict.fromkeys(scopes))
        keys = [counter_key(organization_id, family, scope, 0) for family, scope in wanted]
        found = {
            (str(item["PK"]), str(item["SK"])): item
            for item in self.get_items(keys, consistent=consistent)
        }
        return {
            pair: int(str(found.get((key["PK"], key["SK"]), {}).get(name, 0)))
            for pair, key in zip(wanted, keys, strict=True)
        }

    def page_keys(
        self,
        index: str,
        partitions: Sequence[str],
        skip: int,
        take: int,
        sort_key_between: tuple[str, str] | None = None,
    ) -> list[Item]:
        """Base-table keys of entries ``skip`` to ``skip + take`` of the union of the index
        ``partitions``, newest first. Reads keys only: at most ``skip + take`` of each."""
        wanted = skip + take
        entries: list[tuple[str, str, str]] = []
        for partition in partitions:
            entries.extend(self._newest_keys(index, partition, wanted, sort_key_between))
        entries.sort(reverse=True)
        return [{"PK": pk, "SK": sk} for _, pk, sk in entries[skip:wanted]]

    def every_key(
        self,
        index: str,
        partitions: Sequence[str],
        sort_key_between: tuple[str, str] | None = None,
    ) -> list[Item]:
        """Every entry's base-table key, newest first (for filters no key serves)."""
        entries: list[tuple[str, str, str]] = []
        for partition in partitions:
            entries.extend(self._newest_keys(index, partition, None, sort_key_between))
        entries.sort(reverse=True)
        return [{"PK": pk, "SK": sk} for _, pk, sk in entries]

    def count_keys(
        self, index: str, partitions: Sequence[str], sort_key_between: tuple[str, str]
    ) -> int:
        """How many entries fall in a sort-key range (keys only: ``Select=COUNT``)."""
        total = 0
        for partition in partitions:
            request = self._range_query(index, partition, sort_key_between)
            request["Select"] = "COUNT"
            while True:
                answer = self.table.query(**request)
                total += int(answer["Count"])
                if "LastEvaluatedKey" not in answer:
                    break
                request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return total

    def get_items(self, keys: Sequence[Item], consistent: bool = False) -> list[Item]:
        """The items of ``keys`` in their order (one BatchGetItem per hundred; an item
        deleted since its key was read is left out). Eventually consistent unless asked."""
        found: dict[tuple[str, str], Item] = {}
        client = self.table.meta.client
        for start in range(0, len(keys), BATCH_GET_MAX):
            pending: dict[str, Any] = {
                self.table_name: {
                    "Keys": [
                        {"PK": key["PK"], "SK": key["SK"]}
                        for key in keys[start : start + BATCH_GET_MAX]
                    ],
                    **({"ConsistentRead": True} if consistent else {}),
                }
            }
            while pending:
                answer = client.batch_get_item(RequestItems=pending)
                # The resource's client converts values both ways, as the Table's calls do.
                for item in answer["Responses"].get(self.table_name, []):
                    found[(str(item["PK"]), str(item["SK"]))] = item
                pending = dict(answer.get("UnprocessedKeys") or {})
        return [found[(k["PK"], k["SK"])] for k in keys if (k["PK"], k["SK"]) in found]

    def _range_query(
        self, index: str, partition: str, sort_key_between: tuple[str, str] | None
    ) -> dict[str, Any]:
        condition = f"{index}PK = :pk"
        values: Item = {":pk": partition}
        if sort_key_between:
            condition += f" AND {index}SK BETWEEN :low AND :high"
            values.update({":low": sort_key_between[0], ":high": sort_key_between[1]})
        return {
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }

    def _newest_keys(
        self,
        index: str,
        partition: str,
        limit: int | None,
        sort_key_between: tuple[str, str] | None,
    ) -> list[tuple[str, str, str]]:
        request = self._range_query(index, partition, sort_key_between)
        found: list[tuple[str, str, str]] = []
        while limit is None or len(found) < limit:
            if limit is not None:
                request["Limit"] = limit - len(found)
            answer = self.table.query(**request)
            found.extend(
                (str(entry[f"{index}SK"]), str(entry["PK"]), str(entry["SK"]))
                for entry in answer["Items"]
            )
            if "LastEvaluatedKey" not in answer:
                break
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found


class Repository:
    """One entity's items: built by the Store over its table (``db``), which every
    repository shares, so they all write through one client and commit alike."""

    def __init__(self, db: ListRecords) -> None:
        self._db = db
