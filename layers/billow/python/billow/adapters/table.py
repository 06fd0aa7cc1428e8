"""The table itself: keys, the transaction builder and the access every repository goes through."""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError
from pydantic import BaseModel

from billow.domain.clock import utcnow
from billow.domain.errors import ConcurrentUpdate
from billow.domain.events import OutboxEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

OUTBOX_TTL_S = 2 * 24 * 3600
EVENTS_DICTIONARY = (Path(__file__).parent / "outbox_zdict.json").read_bytes()
"""Lago's customer, subscription and invoice objects in outbox events, with their values
emptied except the usual ones (currencies, statuses, types): the keys and values outbox
items repeat, preset for their compression. Never edit it: items compressed with it
name it by checksum, and would no longer decode. A better one is a new file beside it."""
MAX_SORT_KEY_BYTES = 1024
"""DynamoDB's limit; a longer key is a ValidationException, never an absent item."""

Item = dict[str, Any]


def org_pk(organization_id: str) -> str:
    return f"ORG#{organization_id}"


def expires_in(seconds: int) -> int:
    return int(utcnow().timestamp()) + seconds


def packed(value: BaseModel | dict[str, Any], **dump: Any) -> bytes:
    """A document as stored: its JSON, zlib-compressed.

    DynamoDB bills a write per started kilobyte of the whole item (twice inside a
    transaction) and a read per 4 KB. An invoice with its customer, fees and taxes is
    about 5 KB of JSON with every key repeated, and compresses about fourfold, so each
    write of it costs a quarter. ``dump`` is passed to ``model_dump_json``."""
    text = value.model_dump_json(**dump) if isinstance(value, BaseModel) else json.dumps(value)
    return _compressed(text)


def packed_events(events: Sequence[OutboxEvent]) -> bytes:
    """The outbox item's events, as ``unpacked`` reads them back: a JSON list, compressed
    with ``EVENTS_DICTIONARY`` preset.

    The outbox item is written in a transaction, at two write units per started kilobyte.
    An invoice's webhook is about 4.4 KB of JSON, 1.4 KB compressed on its own: two
    kilobytes. Most of those bytes are the keys of Lago's invoice and customer objects,
    which zlib can take from a preset dictionary instead: with it the same events are
    about 0.6 KB, and the item fits one kilobyte."""
    compressor = zlib.compressobj(6, zdict=EVENTS_DICTIONARY)
    text = "[" + ",".join(event.model_dump_json() for event in events) + "]"
    return compressor.compress(text.encode()) + compressor.flush()


def _compressed(text: str) -> bytes:
    return zlib.compress(text.encode(), 6)


def _inflated(data: bytes) -> bytes:
    """Compressed bytes, with or without the preset dictionary: a zlib stream says
    whether it needs one (and which, by checksum), so either kind decodes here."""
    decompressor = zlib.decompressobj(zdict=EVENTS_DICTIONARY)
    return decompressor.decompress(data) + decompressor.flush()


def unpacked(value: Any) -> Any:
    """The JSON an attribute holds: compressed bytes (``packed``) or, in items written
    before documents were compressed, plain text."""
    if isinstance(value, Binary):
        value = value.value  # type: ignore[attr-defined]  # boto3-stubs omit Binary.value
    if isinstance(value, bytes | bytearray):
        return json.loads(_inflated(bytes(value)))
    return json.loads(str(value))


def document(item: Item) -> dict[str, Any]:
    document: dict[str, Any] = unpacked(item["data"])
    return document


class Transaction:
    """Items written all-or-nothing: a state change and the outbox events it causes."""

    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []
        self._outbox: dict[str, tuple[list[OutboxEvent], Item]] = {}
        """Per organization: the events published so far and the one outbox item holding them."""
        self._counts: dict[tuple[str, str], tuple[dict[str, int], dict[str, Any]]] = {}
        """Per counter item: the counts it moves and its one update action."""
        self._caps: dict[tuple[str, str], tuple[str, int]] = {}
        """Per counter item: a count its moves may not raise above a maximum."""

    def put(
        self,
        item: Item,
        condition: str | None = None,
        values: Item | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        action: dict[str, Any] = {"Item": item}
        if condition:
            action["ConditionExpression"] = condition
        if values:
            action["ExpressionAttributeValues"] = values
        if names:
            action["ExpressionAttributeNames"] = names
        self.actions.append({"Put": action})

    def update(
        self,
        key: Item,
        expression: str,
        condition: str | None = None,
        values: Item | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        action: dict[str, Any] = {"Key": key, "UpdateExpression": expression}
        if condition:
            action["ConditionExpression"] = condition
        if values:
            action["ExpressionAttributeValues"] = values
        if names:
            action["ExpressionAttributeNames"] = names
        self.actions.append({"Update": action})

    def put_versioned(self, item: Item, expected_version: int | None) -> None:
        """Optimistic locking: a new item (``None``) must not exist yet; a replaced one must
        still be at the version the caller read."""
        if expected_version is None:
            self.put(item, condition="attribute_not_exists(PK)")
        else:
            self.put(item, condition="version = :expected", values={":expected": expected_version})

    def add_counts(self, key: Item, moves: dict[str, int]) -> None:
        """Stage ADDs to named counts of one counter item. A transaction may touch an item
        once only, so moves of the same item (two subscriptions of one customer changing
        together) are merged into its one update."""
        counter = (str(key["PK"]), str(key["SK"]))
        if counter not in self._counts:
            action: dict[str, Any] = {"Key": key}
            self._counts[counter] = ({}, action)
            self.actions.append({"Update": action})
        totals, _ = self._counts[counter]
        for name, delta in moves.items():
            totals[name] = totals.get(name, 0) + delta
        self._render_counter(counter)

    def cap_count(self, key: Item, name: str, maximum: int) -> None:
        """Fail the transaction if it raises count ``name`` of a counter it moves to more
        than ``maximum`` (a limit that holds whatever writes race)."""
        self._caps[(str(key["PK"]), str(key["SK"]))] = (name, maximum)
        self._render_counter((str(key["PK"]), str(key["SK"])))

    def _render_counter(self, counter: tuple[str, str]) -> None:
        if counter not in self._counts:
            return
        totals, action = self._counts[counter]
        names = sorted(totals)
        action["UpdateExpression"] = "SET kind = :kind ADD " + ", ".join(
            f"#c{i} :d{i}" for i in range(len(names))
        )
        action["ExpressionAttributeNames"] = {f"#c{i}": name for i, name in enumerate(names)}
        action["ExpressionAttributeValues"] = {
            ":kind": "counter",
            **{f":d{i}": totals[name] for i, name in enumerate(names)},
        }
        cap = self._caps.get(counter)
        if cap is not None and totals.get(cap[0], 0) > 0:
            capped = f"#c{names.index(cap[0])}"
            action["ConditionExpression"] = f"attribute_not_exists({capped}) OR {capped} <= :cap"
            action["ExpressionAttributeValues"][":cap"] = cap[1] - totals[cap[0]]

    def delete(
        self,
        key: Item,
        condition: str | None = None,
        values: Item | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        action: dict[str, Any] = {"Key": key}
        if condition:
            action["ConditionExpression"] = condition
        if values:
            action["ExpressionAttributeValues"] = values
        if names:
            action["ExpressionAttributeNames"] = names
        self.actions.append({"Delete": action})

    def condition_check(self, key: Item, condition: str, values: Item | None = None) -> None:
        """Fail the transaction unless ``condition`` holds for an item it does not write."""
        check: dict[str, Any] = {"Key": key, "ConditionExpression": condition}
        if values:
            check["ExpressionAttributeValues"] = values
        self.actions.append({"ConditionCheck": check})

    def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Stage the events in one outbox item per organization, however many there are.

        A transaction bills every item it writes twice, by the kilobyte started: an
        invoice's webhook and its charge command in one compressed item cost half of what
        two items cost. The publisher puts each event of the item on the bus."""
        for event in events:
            if event.organization_id not in self._outbox:
                item: Item = {
                    "PK": org_pk(event.organization_id),
                    "SK": f"OUTBOX#{event.event_id}",
                    "kind": "outbox",
                    "expires_at": expires_in(OUTBOX_TTL_S),
                }
                self._outbox[event.organization_id] = ([], item)
                self.put(item)
            staged, item = self._outbox[event.organization_id]
            staged.append(event)
            item["events"] = packed_events(staged)


class TableBase:
    """Generic access to the single table: keys, queries and transactions."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @functools.cached_property
    def table(self) -> Table:
        return boto3.resource("dynamodb").Table(self.table_name)

    # -- generic -------------------------------------------------------------------------

    def commit(self, transaction: Transaction) -> None:
        """Write the transaction; a failed condition becomes ConcurrentUpdate."""
        items = [
            {name: {**body, "TableName": self.table_name} for name, body in action.items()}
            for action in transaction.actions
        ]
        try:
            # A single write needs no transaction (which costs twice the write units).
            if len(items) == 1 and "Put" in items[0]:
                self.table.put_item(
                    **{k: v for k, v in items[0]["Put"].items() if k != "TableName"}
                )
            elif len(items) == 1 and "Update" in items[0]:
                self.table.update_item(
                    **{k: v for k, v in items[0]["Update"].items() if k != "TableName"}
                )
            elif len(items) == 1 and "Delete" in items[0]:
                self.table.delete_item(
                    **{k: v for k, v in items[0]["Delete"].items() if k != "TableName"}
                )
            else:
                self.table.meta.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in {"ConditionalCheckFailedException", "TransactionCanceledException"}:
                raise ConcurrentUpdate(str(error)) from error
            raise

    def get_item(self, pk: str, sk: str) -> Item | None:
        """The item, or None. Keys hold ids from URLs and bodies: one too long to be a
        key names nothing, so a lookup of it is a 404 rather than DynamoDB's error."""
        if len(sk.encode()) > MAX_SORT_KEY_BYTES:
            return None
        return self.table.get_item(Key={"PK": pk, "SK": sk}, ConsistentRead=True).get("Item")

    def query(self, **kwargs: Any) -> Iterator[Item]:
        """Every item a Query matches, page after page."""
        while True:
            page = self.table.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def query_prefix(self, pk: str, prefix: str) -> Iterator[Item]:
        """Items whose sort key starts with ``prefix`` (none when no key could)."""
        if len(prefix.encode()) > MAX_SORT_KEY_BYTES:
            return iter(())
        return self.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": pk, ":prefix": prefix},
        )

    def query_index(self, gsi1pk: str) -> Iterator[Item]:
        return self.query(
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": gsi1pk},
        )
