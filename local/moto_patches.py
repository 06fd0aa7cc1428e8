"""Fixes to moto that local mode needs (dev-only; moto is never deployed).

moto rolls back a failed TransactWriteItems by swapping in deep copies of the tables it
took beforehand. The copies carry their own stream shard, so after the first failed
transaction (Billow's de-duplication of a redelivered Stripe event is one) every later
write lands in a shard no open shard iterator reads, and the outbox stops flowing. The
patch keeps the live shard and drops only the records of the rolled-back writes, which
is what DynamoDB does: a cancelled transaction leaves no trace in the stream.
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_PATCHED = "_billow_keeps_stream_shards"


def install() -> None:
    original = DynamoDBBackend.transact_write_items
    if getattr(original, _PATCHED, False):
        return

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

    setattr(transact_write_items, _PATCHED, True)
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
