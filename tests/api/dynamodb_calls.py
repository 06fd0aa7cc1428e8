"""What Billow asks of DynamoDB while a test acts: each request's operation and the sort
keys it names, counted on the process's table client (the local runtime's functions share
it), so a test can hold a path to the requests it may make."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from billow.composition import dependencies


@dataclass
class DynamoCall:
    operation: str
    sort_keys: list[str] = field(default_factory=list)
    """The sort keys (or, for a Query, its key condition's values) the request names."""
    thread: str = ""
    """The thread that made it: locally, each queue's consumer runs on its own
    (``billow-local-sqs-{queue}``), so a test can tell one function's requests apart."""


@dataclass
class DynamoCalls:
    calls: list[DynamoCall] = field(default_factory=list)

    def by_operation(self) -> Counter[str]:
        return Counter(call.operation for call in self.calls)

    def naming(self, prefix: str) -> list[DynamoCall]:
        """The requests that name a sort key starting with ``prefix``."""
        return [c for c in self.calls if any(k.startswith(prefix) for k in c.sort_keys)]

    def on_thread(self, name: str) -> list[DynamoCall]:
        """The requests made by the thread ``name``."""
        return [call for call in self.calls if call.thread == name]

    def on_this_thread(self) -> list[DynamoCall]:
        """The requests the test's own thread made (a service it called directly)."""
        return self.on_thread(threading.current_thread().name)

    def __len__(self) -> int:
        return len(self.calls)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"S"}:
            yield str(value["S"])
        else:
            for inner in value.values():
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _sort_keys(operation: str, body: dict[str, Any]) -> list[str]:
    if operation == "Query":
        return [s for s in _strings(body.get("ExpressionAttributeValues", {})) if s]
    keys: list[str] = []
    if operation in {"GetItem", "DeleteItem", "UpdateItem"}:
        keys.append(body["Key"]["SK"]["S"])
    elif operation == "PutItem":
        keys.append(body["Item"]["SK"]["S"])
    elif operation == "BatchGetItem":
        for request in body["RequestItems"].values():
            keys.extend(key["SK"]["S"] for key in request["Keys"])
    elif operation == "TransactWriteItems":
        for action in body["TransactItems"]:
            for inner in action.values():
                keys.append((inner.get("Key") or inner["Item"])["SK"]["S"])
    return keys


@contextmanager
def dynamodb_calls() -> Iterator[DynamoCalls]:
    """Record every DynamoDB request made through the shared client meanwhile."""
    recorded = DynamoCalls()
    events = dependencies().store.table.meta.client.meta.events

    def noted(model: Any, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        recorded.calls.append(
            DynamoCall(model.name, _sort_keys(model.name, body), threading.current_thread().name)
        )

    events.register("before-call.dynamodb", noted, unique_id="test-dynamodb-calls")
    try:
        yield recorded
    finally:
        events.unregister("before-call.dynamodb", unique_id="test-dynamodb-calls")
