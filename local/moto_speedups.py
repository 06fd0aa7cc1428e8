"""moto internals replaced so its answers take a time that does not grow with the data.

Each function here is moto's own cost, not DynamoDB's or SQS's, and grows with everything
written so far, which made long runs quadratic in time (and, for transactions, in
garbage). Billow's requests and moto's answers are unchanged, only how moto finds them.
Installed before ``local/moto_patches.py``, which wraps these versions (its lock, its
stream-shard fix) as it would wrap moto's own. Dev-only, like all of ``local/``.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import inspect
import threading
import time
from dataclasses import dataclass
from typing import Any


def speed_up_moto() -> None:
    """Make moto answer in a time that does not grow with the table or the queue.

    Each of these is moto's cost, not DynamoDB's or SQS's, and grows with everything
    written so far, which made a billing run quadratic: Billow's requests and moto's
    answers are unchanged, only how moto finds them. Installed before
    ``local/moto_patches.py``, which wraps these versions (its lock, its stream-shard fix)
    as it would wrap moto's own.
    """
    _cache_moto_module_list()
    _partition_queries()
    _journal_transactions()
    _index_partitions()  # after the journal: its rollbacks count as writes
    _cache_json_paths()
    _cheap_retention_check()
    _cheap_sends()


def _cache_moto_module_list() -> None:
    """moto's server lists its own package directory (os.listdir and an isdir per
    service) under a global lock on every request, to route it; the list never changes."""
    from moto import backends  # noqa: PLC0415

    if not hasattr(backends.list_of_moto_modules, "cache_info"):
        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = functools.cache(lambda: modules)


def _cache_json_paths() -> None:
    """EventBridge input transformers: moto compiles each JSONPath of the transformer
    (a yacc parser build each time) for every event it delivers; compiled once here."""
    from jsonpath_ng import ext  # noqa: PLC0415

    if not hasattr(ext.parse, "cache_info"):
        ext.parse = functools.lru_cache(maxsize=256)(ext.parse)


def _cheap_retention_check() -> None:
    """SQS receives: for every message handed out, moto reads its queue's retention by
    computing all the queue's attributes, message counts included (a pass over every
    message in the queue); the retention is read from the queue directly here."""
    from moto.sqs.models import SQSBackend  # noqa: PLC0415

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


class _SortedPartition(dict[Any, Any]):
    """One partition of a moto table (sort key → item) that also keeps its string sort
    keys in order, so a ``begins_with`` query finds its items by bisection instead of
    looking at every item of the partition (every item of an organization, in Billow)."""

    def __init__(self) -> None:
        super().__init__()
        self.sorted_keys: list[tuple[str, Any]] | None = []
        """``(sort key, moto key)`` in order; None once a non-string sort key arrives."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self and self.sorted_keys is not None:
            if getattr(key, "type", None) == "S":
                bisect.insort(self.sorted_keys, (key.value, key), key=lambda entry: entry[0])
            else:
                self.sorted_keys = None
        super().__setitem__(key, value)

    def _forget(self, key: Any) -> None:
        if key in self and self.sorted_keys is not None:
            index = bisect.bisect_left(self.sorted_keys, key.value, key=lambda entry: entry[0])
            del self.sorted_keys[index]

    def __delitem__(self, key: Any) -> None:
        self._forget(key)
        super().__delitem__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        self._forget(key)
        return super().pop(key, *default)

    def with_prefix(self, prefix: str) -> list[Any]:
        assert self.sorted_keys is not None
        found = []
        index = bisect.bisect_left(self.sorted_keys, prefix, key=lambda entry: entry[0])
        while index < len(self.sorted_keys) and self.sorted_keys[index][0].startswith(prefix):
            found.append(self[self.sorted_keys[index][1]])
            index += 1
        return found


def _cheap_sends() -> None:
    """SQS sends: for each message, moto asks its queue for all its attributes (message
    counts included: passes over every message in the queue) to read one flag,
    ContentBasedDeduplication; during a send, the queue answers that flag alone."""
    from moto.sqs.models import Queue, SQSBackend  # noqa: PLC0415

    if getattr(SQSBackend, "_bench_cheap_sends", False):
        return
    sending = threading.local()
    attributes, send_message = vars(Queue)["attributes"].fget, SQSBackend.send_message

    def queue_attributes(self: Any) -> dict[str, Any]:
        if getattr(sending, "active", False):
            flag = bool(getattr(self, "content_based_deduplication", False))
            return {"ContentBasedDeduplication": "true" if flag else "false"}
        return dict(attributes(self))

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            sending.active = False

    Queue.attributes = property(queue_attributes)  # type: ignore[assignment,method-assign]
    SQSBackend.send_message = send  # type: ignore[method-assign]
    SQSBackend._bench_cheap_sends = True  # type: ignore[attr-defined]


def _partition_queries() -> None:
    """A Query makes moto sort every item of the table (``all_items``) and compare each
    one's partition key. Here a base-table Query gets its partition's items only (for
    ``begins_with``, only those with the prefix) and an index Query the items carrying
    its index partition key, unsorted; moto then filters, sorts, pages and projects them
    exactly as before."""
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    if getattr(Table, "_bench_partitioned", False):
        return
    hint = threading.local()
    original_query, original_all_items = Table.query, Table.all_items
    signature = inspect.signature(original_query)

    # Wrapped, so the next patch (``_index_partitions``) reads moto's signature through it.
    @functools.wraps(original_query)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        conditions = bound.get("hash_key_conditions") or []
        if bound.get("index_name") and len(conditions) == 1:
            hint.query = (self, "index", conditions[0], None, None)
        elif not bound.get("index_name") and bound["hash_key"] is not None:
            hint.query = (
                self,
                "table",
                bound["hash_key"],
                bound["range_comparison"],
                bound["range_objs"],
            )
        try:
            return original_query(self, *args, **kwargs)
        finally:
            hint.query = None

    def all_items(self: Any) -> Any:
        noted = getattr(hint, "query", None)
        if noted is None or noted[0] is not self:
            return original_all_items(self)
        _, where, key, comparison, values = noted
        if where == "index":
            name, value = key
            return [
                item
                for partition in self.items.values()
                for item in (partition.values() if self.range_key_attr else [partition])
                if (found := item.attrs.get(name)) is not None and found == value
            ]
        partition = self.items.get(key, {})
        if not self.range_key_attr:
            return [partition]
        if (
            str(comparison).upper() == "BEGINS_WITH"
            and values
            and values[0].type == "S"
            and isinstance(partition, _SortedPartition)
            and partition.sorted_keys is not None
        ):
            return partition.with_prefix(values[0].value)
        return list(partition.values())

    original_init = Table.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.items.default_factory = _SortedPartition

    Table.__init__ = init  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    Table._bench_partitioned = True  # type: ignore[attr-defined]


class _Writes:
    """How many writes moto has made: cached views of a table are valid while it stands."""

    count = 0


def _count_writes() -> None:
    """Count moto's writes (each bumps ``_Writes.count`` as it starts and as it ends)."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    def counted(write: Any) -> Any:
        @functools.wraps(write)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _Writes.count += 1
            try:
                return write(*args, **kwargs)
            finally:
                _Writes.count += 1

        return wrapper

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        setattr(DynamoDBBackend, name, counted(getattr(DynamoDBBackend, name)))
    for name in ("put_item", "delete_item"):
        setattr(Table, name, counted(getattr(Table, name)))


def _index_groups(table: Any, attribute: str) -> tuple[int, dict[Any, list[Any]], dict[Any, Any]]:
    """The items by their ``attribute`` value, grouped once per write generation, with a
    memo of what was derived from them (sorted partitions) that lives as long."""
    groups = vars(table).setdefault("_index_groups", {})
    cached = groups.get(attribute)
    if cached is None or cached[0] != _Writes.count:
        grouped: dict[Any, list[Any]] = {}
        for items in table.items.values():
            for item in items.values() if table.range_key_attr else [items]:
                if (found := item.attrs.get(attribute)) is not None:
                    grouped.setdefault(found, []).append(item)
        cached = groups[attribute] = (_Writes.count, grouped, {})
    return cached


def _index_partition(table: Any, attribute: str, value: Any) -> list[Any]:
    """The items whose ``attribute`` is ``value`` (a copy moto may sort)."""
    return list(_index_groups(table, attribute)[1].get(value, []))


@dataclass(frozen=True)
class _Window:
    """A limited index Query with no condition on the sort key and no filter: moto needs
    only the entries from its start key to ``limit`` past it, in its own order."""

    hash_attrs: tuple[str, ...]
    range_attrs: tuple[str | None, ...]
    forward: bool
    limit: int
    start_key: dict[str, Any] | None


def _page_window(table: Any, index: Any, bound: dict[str, Any]) -> _Window | None:
    """The window a Query reads, or None when moto must see the whole partition."""
    from moto.dynamodb.comparisons import OpDefault  # noqa: PLC0415  (moto's "no filter")

    limit = bound.get("limit")
    if (
        not limit
        or bound.get("range_comparison")
        or bound.get("range_key_conditions")
        or not isinstance(bound.get("filter_expression"), OpDefault | None)
        or bound.get("filter_kwargs")
    ):
        return None
    hashes = [key["AttributeName"] for key in index.schema if key["KeyType"] == "HASH"]
    ranges = [key["AttributeName"] for key in index.schema if key["KeyType"] == "RANGE"]
    if len(hashes) != 1 or len(ranges) != 1:
        return None
    return _Window(
        hash_attrs=(hashes[0], table.hash_key_attr),
        range_attrs=(ranges[0], table.range_key_attr),
        forward=bound.get("scan_index_forward") is not False,
        limit=int(limit),
        start_key=bound.get("exclusive_start_key"),
    )


def _page_of(table: Any, attribute: str, value: Any, window: _Window, sort: Any) -> list[Any]:
    """The entries of an index partition a limited Query can return, found by bisection
    in the partition sorted once per write generation (as moto sorts it), so a page costs
    its own size whatever the partition holds, as in DynamoDB. One entry either side is
    kept so moto still sees where the page starts and that more follow."""
    _, grouped, memo = _index_groups(table, attribute)
    key = ("window", value, window.hash_attrs, window.range_attrs, window.forward)
    if key not in memo:
        indexed = [
            entry
            for entry in grouped.get(value, [])
            if entry.attrs.get(window.range_attrs[0]) is not None
        ]
        ordered = sort(table, list(window.hash_attrs), list(window.range_attrs), indexed)
        memo[key] = ordered if window.forward else ordered[::-1]
    ordered = memo[key]
    start = 0
    if window.start_key is not None:
        start = bisect.bisect_left(
            range(len(ordered)),
            True,
            key=lambda position: (
                not table._item_comes_before_dct(
                    ordered[position],
                    window.start_key,
                    list(window.hash_attrs),
                    list(window.range_attrs),
                    window.forward,
                )
            ),
        )
    return list(ordered[max(0, start - 1) : start + window.limit + 1])


def _index_partitions() -> None:
    """An index Query makes moto look at every item of the table for the index partition,
    sort the partition, and weigh each entry at its whole item's size for the 1 MB page
    limit. Here the items of each index partition are grouped, and sorted as moto sorts
    them, once per write generation of the table (a page read after the data is written
    costs the partition, not the table); and an entry of a keys-only or INCLUDE index
    weighs what DynamoDB weighs, its projected attributes, so moto pages where DynamoDB
    does. A limited Query with no sort-key condition or filter (a list's page) is handed
    only its window of the sorted partition (``_page_of``), so it costs its page, as in
    DynamoDB, not the partition. Billow's requests and moto's answers are otherwise
    unchanged."""
    from moto.dynamodb.models.dynamo_type import Item, bytesize  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    if getattr(Table, "_bench_index_partitions", False):
        return
    state = threading.local()
    original_query, original_sorted = Table.query, Table.sorted_items
    signature = inspect.signature(original_query)

    _count_writes()

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        conditions = bound.get("hash_key_conditions") or []
        index_name = bound.get("index_name")
        if not index_name or len(conditions) != 1:
            return original_query(self, *args, **kwargs)
        index = self.get_index(index_name)
        projection = (index.projection or {}).get("ProjectionType", "ALL")
        weighed = None
        if projection != "ALL":
            weighed = {self.hash_key_attr, self.range_key_attr} | {
                key["AttributeName"] for key in index.schema
            }
            weighed |= set((index.projection or {}).get("NonKeyAttributes", []))
        state.query = (self, conditions[0], weighed, _page_window(self, index, bound))
        try:
            return original_query(self, *args, **kwargs)
        finally:
            state.query = None

    def all_items(self: Any) -> Any:
        noted = getattr(state, "query", None)
        if noted is None or noted[0] is not self:
            return all_items.original(self)  # type: ignore[attr-defined]
        (name, value) = noted[1]
        if noted[3] is not None:
            return _page_of(self, name, value, noted[3], original_sorted)
        return _index_partition(self, name, value)

    def sorted_items(
        self: Any, hash_attrs: list[str], range_attrs: list[Any], items: list[Any]
    ) -> list[Any]:
        noted = getattr(state, "query", None)
        if noted is None or noted[0] is not self or noted[3] is not None:
            return list(original_sorted(self, hash_attrs, range_attrs, items))
        (name, value) = noted[1]
        memo = _index_groups(self, name)[2]
        memo_key = (value, tuple(hash_attrs), tuple(range_attrs), len(items))
        if memo_key not in memo:
            memo[memo_key] = list(original_sorted(self, hash_attrs, range_attrs, items))
        return list(memo[memo_key])

    original_size = Item.size

    def size(self: Any) -> int:
        noted = getattr(state, "query", None)
        if noted is None or noted[2] is None:
            return int(original_size(self))
        return sum(
            bytesize(key) + value.size() for key, value in self.attrs.items() if key in noted[2]
        )

    all_items.original = Table.all_items  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.sorted_items = sorted_items  # type: ignore[method-assign,assignment]
    Item.size = size  # type: ignore[method-assign]
    Table._bench_index_partitions = True  # type: ignore[attr-defined]


def _journal_transactions() -> None:
    """Roll back a failed TransactWriteItems from a journal of the items it touches.

    moto backs up a transaction by deep-copying the whole table, items and stream
    records included, once per item of the transaction, so every transaction costs
    time in proportion to everything written so far. A copy of the items the
    transaction writes gives the same rollback."""
    from moto.dynamodb import models  # noqa: PLC0415
    from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: PLC0415
    from moto.dynamodb.models.table import Table  # noqa: PLC0415

    if getattr(models.DynamoDBBackend, "_bench_journal", False):
        return
    real_copy = models.copy

    class _NoTableCopy:
        """moto's module sees this as ``copy``: tables are not copied, the rest is."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else real_copy.deepcopy(value, memo)

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        journal: list[tuple[Any, Any, Any, Any]] = []
        for entry in transact_items:
            with contextlib.suppress(Exception):  # malformed: moto's own checks answer it
                ((_, op),) = entry.items()
                table = self.tables[op["TableName"]]
                attributes = op.get("Item") or op["Key"]
                hash_key = DynamoType(attributes[table.hash_key_attr])
                range_key = (
                    DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
                )
                before = real_copy.deepcopy(table.get_item(hash_key, range_key))
                journal.append((table, hash_key, range_key, before))
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, before in reversed(journal):
                partition = table.items[hash_key] if range_key else table.items
                slot = range_key if range_key else hash_key
                if before is None:
                    partition.pop(slot, None)
                else:
                    partition[slot] = before
            raise

    models.copy = _NoTableCopy  # type: ignore[assignment]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    models.DynamoDBBackend._bench_journal = True  # type: ignore[attr-defined]
