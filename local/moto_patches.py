"""Fixes to moto that local mode needs (dev-only; moto is never deployed).

1. moto rolls back a failed TransactWriteItems by swapping in deep copies of the tables
   it took beforehand. The copies carry their own stream shard, so after the first
   failed transaction (Billow's de-duplication of a redelivered Stripe event is one)
   every later write lands in a shard no open shard iterator reads, and the outbox stops
   flowing. The patch keeps the live shard and drops only the records of the rolled-back
   writes, which is what DynamoDB does: a cancelled transaction leaves no trace.
2. moto's server answers requests on many threads, but its DynamoDB models are not
   thread-safe: a Query iterating a partition while another request writes to it fails
   with "dictionary changed size during iteration" (seen here, as a 500). DynamoDB and
   DynamoDB Streams operations are therefore serialized; SQS long polls are not touched.
3. moto's GetItem answers "no item" for a key longer than DynamoDB allows (2 KB partition
   key, 1 KB sort key), where DynamoDB refuses the request with a ValidationException, as
   moto itself does for writes. The patch refuses it too, so a lookup of an id too long
   to be a key behaves locally as it does in AWS.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

_PATCHED = "_billow_patched"
_DYNAMODB_LOCK = threading.RLock()


def install() -> None:
    if getattr(DynamoDBBackend, _PATCHED, False):
        return
    _keep_stream_shards_on_rollback()
    _refuse_oversized_keys_on_get()
    for backend in (DynamoDBBackend, DynamoDBStreamsBackend):
        for name, method in list(vars(backend).items()):
            if inspect.isfunction(method) and not name.startswith("_"):
                setattr(backend, name, _serialized(method))
    setattr(DynamoDBBackend, _PATCHED, True)


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _DYNAMODB_LOCK:
            return method(*args, **kwargs)

    return call


def _keep_stream_shards_on_rollback() -> None:
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        shards = {
            name: (table.stream_shard, len(table.stream_shard.items))
            for name, table in self.tables.items()
            if table.stream_shard is not None
        }
        try:
            original(self, transact_items)
        except Exception:
            for name, (shard, length) in shards.items():
                restored = self.tables.get(name)
                if restored is not None:
                    del shard.items[length:]
                    shard.table = restored
                    restored.stream_shard = shard
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _refuse_oversized_keys_on_get() -> None:
    original = DynamoDBBackend.get_item

    def get_item(
        self: DynamoDBBackend,
        table_name: str,
        keys: dict[str, Any],
        projection_expressions: list[list[str]] | None = None,
    ) -> Any:
        self.get_table(table_name)._validate_key_sizes(keys)
        return original(self, table_name, keys, projection_expressions)

    DynamoDBBackend.get_item = get_item  # type: ignore[method-assign]
