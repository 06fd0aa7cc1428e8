"""Billing-run throughput and AWS cost per invoice, through the real handlers.

Setup (timed on its own): a local Billow, one organization connected to a fresh Stripe
emulator account, a monthly pay-in-arrears plan, N Stripe customers with a default card,
N Billow customers linked to them and N subscriptions, and one Lago webhook endpoint (a
receiver in this process). The run is what production does at a month boundary: the
``billing-run`` schedule fires an hour after the first day of next month, the invoice
worker bills every subscription, the outbox publisher puts the events on the bus, the
payments consumer charges each invoice through Stripe, and Stripe's
``payment_intent.succeeded`` webhooks come back and are processed. Every invoice must end
``succeeded``, which ``GET /api/v1/invoices`` confirms.

How calls are counted:

* AWS: botocore's ``before-call`` / ``after-call`` events, registered on boto3's default
  session (every client Billow's adapters build) and on the local runtime's own clients.
  The runtime invokes every handler in this process, and a wrapper around its invoke
  marks the thread as inside function F for the duration. A call made inside a handler
  is Billow's (what its code costs in AWS); one made outside by a queue poller or the
  stream tailer is the runtime standing in for Lambda's event source mappings
  (ReceiveMessage, DeleteMessageBatch, GetRecords); anything else (``wait_idle``'s
  GetQueueAttributes, setup) is the harness. Both kinds happen on the same poller threads,
  so the thread alone cannot tell them apart; being inside an invocation can.
* DynamoDB capacity: request units from the sizes of the items written and read, as
  DynamoDB sizes them (``Capacity``).
* Stripe: the emulator's per-account request counter (``/_config/requests``).
* Lambda: invocations, records, and each invocation's wall and thread CPU time.

The AWS stand-in is moto, run in a process of its own with fixes that make its answers
independent of the table's size (``speed_up_moto``); Billow's requests are unchanged.

Usage: python bench/billing_run.py [--subscriptions N] [--setup direct|api] [--workers W]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import secrets
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "billow" / "python", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import stripe  # noqa: E402

from bench.support import item_size, metered_runtime, value_size  # noqa: E402
from billow.composition import dependencies  # noqa: E402
from billow.services.customers import CustomerInput, upsert_customer  # noqa: E402
from billow.services.subscriptions import CreateSubscription  # noqa: E402
from billow.services.subscriptions import create as create_subscription  # noqa: E402
from billow.topology import TOPOLOGY  # noqa: E402
from local.lambda_invocation import Functions  # noqa: E402
from local.runtime import LocalRuntime  # noqa: E402
from tests.support import WebhookReceiver, bearer, http_json  # noqa: E402

# -- list prices, us-east-1, on demand ---------------------------------------------------

PER_MILLION = {
    "DynamoDB WRU": 0.625,
    "DynamoDB RRU": 0.125,
    "EventBridge event": 1.00,
    "SQS request": 0.40,
    "SNS request": 0.50,
    "Lambda request": 0.20,
    "Secrets Manager call": 0.05 * 100,
}
"""Dollars per million; Secrets Manager lists $0.05 per 10,000 calls."""
LAMBDA_GB_S = 0.0000166667
"""x86; the stack deploys arm64, listed at $0.0000133334."""
LAMBDA_ARM_GB_S = 0.0000133334
LOGS_INGESTED_GB = 0.50
LAMBDA_PLATFORM_LOG_BYTES = 320
"""START, END and REPORT lines Lambda itself writes per invocation (approximate)."""
FULL_VCPU_MB = 1769
"""Lambda gives a function one full vCPU at 1,769 MB, proportionally less below."""
PAYLOAD_CHUNK = 64 * 1024
"""SQS bills each 64 KB of a request as one request; EventBridge each 64 KB of an entry."""

VISA = "4242424242424242"
PLAN_CODE = "bench-monthly"


# -- DynamoDB request units ---------------------------------------------------------------


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


IndexKey = tuple[str, str] | None


@dataclasses.dataclass
class _Known:
    size: int
    index_keys: tuple[IndexKey, ...]
    """The item's key in each index of the table (None where it is not in it)."""


class Capacity:
    """Request units of DynamoDB calls, from the wire-format requests and responses.

    * Reads: 4 KB units; GetItem per item, BatchGetItem per key asked for (each as a
      GetItem of its own: an item rounded up, a missing one the minimum), Query per page
      (the sum of the items read, rounded up once); eventually consistent reads (and every
      GSI read) cost half;
      an empty read still costs the minimum. Items read with a ProjectionExpression are
      costed at their full size (DynamoDB reads the whole item), found from earlier
      writes by key or by the index sort key.
    * Writes: 1 KB units of the larger of the item before and after; TransactWriteItems
      costs twice that per item. Each GSI costs a write of the new entry when the item
      enters the index, changes its index key there, or (projection ALL only) changes at
      all while in it, plus a delete of the old entry when the index key changes or the
      item leaves it: an entry is the whole item for a projection ALL, else its keys and
      projected attributes (at least one unit; Billow projects only ids, which never
      change); index writes are not doubled by transactions. A write whose condition
      fails is charged like one that succeeds.
    * The "before" of an item is what this process last wrote or read for that key
      (every item in the bench is created in-process, so this is exact for Puts); an
      UpdateItem's "after" is taken to be the size before.
    """

    def __init__(self) -> None:
        self._table_keys = (TOPOLOGY.table.partition_key, TOPOLOGY.table.sort_key)
        self._indexes = TOPOLOGY.table.indexes
        self._known: dict[tuple[str, str], _Known] = {}
        self._by_index_sort_key: dict[str, int] = {}
        """Item sizes by their first index's sort key (queries projecting attributes)."""

    def _key(self, item: dict[str, Any]) -> tuple[str, str] | None:
        pk, sk = (item.get(name, {}).get("S") for name in self._table_keys)
        return (pk, sk) if pk is not None and sk is not None else None

    def _index_keys(self, item: dict[str, Any]) -> tuple[IndexKey, ...]:
        keys = []
        for index in self._indexes:
            pk, sk = (item.get(name, {}).get("S") for name in (index.partition_key, index.sort_key))
            keys.append((pk, sk) if pk is not None and sk is not None else None)
        return tuple(keys)

    def _entry_units(self, index: Any, item: dict[str, Any] | None, item_size_: int) -> int:
        """Write units of one index entry: the whole item, or its keys and projection."""
        if index.projected is None:
            return _units(item_size_, 1024)
        copied = {*self._table_keys, index.partition_key, index.sort_key, *index.projected}
        size = item_size({k: v for k, v in item.items() if k in copied}) if item else 0
        return _units(size, 1024)

    def _remember(self, item: dict[str, Any], size: int | None = None) -> None:
        key = self._key(item)
        if key is None:
            return
        size = item_size(item) if size is None else size
        index_keys = self._index_keys(item)
        self._known[key] = _Known(size, index_keys)
        if index_keys[0] is not None:
            self._by_index_sort_key[index_keys[0][1]] = size

    def _full_size(self, item: dict[str, Any]) -> int:
        size = item_size(item)
        key = self._key(item)
        if key is not None and key in self._known:
            return max(size, self._known[key].size)
        sort_key = item.get(self._indexes[0].sort_key, {}).get("S")
        return max(size, self._by_index_sort_key.get(sort_key, 0))

    def reads(self, operation: str, request: dict[str, Any], response: dict[str, Any]) -> float:
        factor = 1.0 if request.get("ConsistentRead") and not request.get("IndexName") else 0.5
        if operation == "GetItem":
            item = response.get("Item")
            if item:
                self._remember(item)
            return _units(item_size(item) if item else 0, 4096) * factor
        if operation == "BatchGetItem":
            units = 0.0
            for table, asked in request.get("RequestItems", {}).items():
                found = response.get("Responses", {}).get(table, [])
                for item in found:
                    self._remember(item)
                factor = 1.0 if asked.get("ConsistentRead") else 0.5
                unprocessed = len(
                    response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                )
                missing = len(asked.get("Keys", [])) - len(found) - unprocessed
                units += factor * (
                    sum(_units(item_size(item), 4096) for item in found) + missing * _units(0, 4096)
                )
            return units
        if operation in ("Query", "Scan"):
            items = response.get("Items", [])
            projected = "ProjectionExpression" in request or "AttributesToGet" in request
            total = sum(self._full_size(item) if projected else item_size(item) for item in items)
            if not projected:
                for item in items:
                    self._remember(item)
            return _units(total, 4096) * factor
        return 0.0

    def writes(
        self, operation: str, request: dict[str, Any], succeeded: bool
    ) -> list[tuple[str, int, int]]:
        """Each item a write request writes: (sort key's leading word, table write units,
        index write units)."""
        if operation == "TransactWriteItems":
            actions = [next(iter(action.items())) for action in request.get("TransactItems", [])]
            factor = 2
        else:
            kind = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}.get(operation)
            actions, factor = ([(kind, request)] if kind else []), 1
        written = []
        for kind, body in actions:
            units, index_units = self._write(kind, body, succeeded)
            key = self._key(body.get("Item") or body.get("Key") or {})
            written.append((key[1].split("#", 1)[0] if key else "?", factor * units, index_units))
        return written

    def _write(self, kind: str, body: dict[str, Any], succeeded: bool) -> tuple[int, int]:
        key_item = body.get("Item") or body.get("Key") or {}
        key = self._key(key_item)
        before = self._known.get(key) if key else None
        no_index: tuple[IndexKey, ...] = (None,) * len(self._indexes)
        old_size, old_keys = (before.size, before.index_keys) if before else (0, no_index)
        item = body.get("Item")
        if kind == "Put":
            new_size, new_keys = item_size(body["Item"]), self._index_keys(body["Item"])
        elif kind == "Update":
            new_size = old_size or item_size(key_item) + sum(
                value_size(v) + 8 for v in body.get("ExpressionAttributeValues", {}).values()
            )
            new_keys = tuple(
                self._index_after_update(index, old, body)
                for index, old in zip(self._indexes, old_keys, strict=True)
            )
        elif kind == "Delete":
            new_size, new_keys = 0, no_index
        else:  # ConditionCheck: charged as a write of the item it checks
            new_size, new_keys = old_size, old_keys
        table_units = _units(max(old_size, new_size), 1024)
        index_units = 0
        for index, old, new in zip(self._indexes, old_keys, new_keys, strict=True):
            # An entry that keeps its keys is rewritten only when it copies the whole item:
            # the attributes Billow's other indexes project (ids) never change.
            unchanged = old == new and index.projected is not None
            if new is not None and not unchanged:
                index_units += self._entry_units(index, item, new_size)
            if old is not None and old != new:
                index_units += self._entry_units(index, item, old_size)
        if succeeded and key is not None and kind != "ConditionCheck":
            if kind == "Delete":
                self._known.pop(key, None)
            elif kind == "Put":
                self._remember(body["Item"], new_size)
            else:
                self._known[key] = _Known(new_size, new_keys)
        return table_units, index_units

    @staticmethod
    def _index_after_update(index: Any, old_index: IndexKey, body: dict[str, Any]) -> IndexKey:
        expression = body.get("UpdateExpression", "")
        names = body.get("ExpressionAttributeNames", {})
        for alias, name in names.items():
            expression = expression.replace(alias, name)
        remove = expression.partition("REMOVE")[2]
        keys = (index.partition_key, index.sort_key)
        if any(name in remove for name in keys):
            return None
        if any(name in expression for name in keys):
            return ("?", "?")  # set by the update: counted as a changed index key
        return old_index


# -- counting -----------------------------------------------------------------------------


@dataclasses.dataclass
class CallStats:
    calls: int = 0
    errors: int = 0
    read_units: float = 0.0
    write_units: float = 0.0
    index_write_units: float = 0.0
    billed: int = 0
    """SQS: requests in 64 KB chunks; EventBridge: events in 64 KB chunks; others: calls."""
    entries: int = 0
    """Messages sent or received, events put, items written."""
    nonempty: int = 0
    """Receives that returned messages."""
    seconds: float = 0.0
    """Wall time of the calls here: moto's answer time, locally."""

    def add(self, other: CallStats) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class FunctionStats:
    invocations: int = 0
    records: int = 0
    errors: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    last_end: float = 0.0


@dataclasses.dataclass
class Window:
    calls: dict[tuple[str, str, str, str], CallStats]
    """(origin, function, service, operation) → stats."""
    functions: dict[str, FunctionStats]
    log_bytes: int
    items: dict[tuple[str, str, str], list[float]]
    """(function, "read" or "write", item kind) → [items, request units], Billow's code."""

    def select(
        self, origin: str | None = None, service: str | None = None, function: str | None = None
    ) -> Iterator[tuple[tuple[str, str, str, str], CallStats]]:
        for key, stats in self.calls.items():
            if (
                (origin is None or key[0] == origin)
                and (service is None or key[2] == service)
                and (function is None or key[1] == function)
            ):
                yield key, stats

    def total(
        self, origin: str | None = None, service: str | None = None, function: str | None = None
    ) -> CallStats:
        summed = CallStats()
        for _, stats in self.select(origin, service, function):
            summed.add(stats)
        return summed


class _LogSink(io.TextIOBase):
    """Takes the handlers' stdout (Powertools logs and EMF metrics): counted, not shown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes += len(text.encode())
        return len(text)


class Meter:
    """Counts handler invocations and every AWS call, by origin, function and operation."""

    def __init__(self, log_sink: _LogSink) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._capacity = Capacity()
        self._log_sink = log_sink
        self._calls: dict[tuple[str, str, str, str], CallStats] = {}
        self._functions: dict[str, FunctionStats] = {}
        self._items: dict[tuple[str, str, str], list[float]] = {}
        self._log_mark = 0
        self.unknown_operations: set[str] = set()

    # -- handler invocations ---------------------------------------------------------------

    def wrap_invoke(self, invoke: Callable[..., Any]) -> Callable[..., Any]:
        def metered(functions: Any, name: str, event: dict[str, Any]) -> Any:
            outer = getattr(self._local, "function", None)
            self._local.function = name
            wall, cpu = time.perf_counter(), time.thread_time()
            failed = False
            try:
                result = invoke(functions, name, event)
                failed = isinstance(result, dict) and bool(result.get("batchItemFailures"))
                return result
            except BaseException:
                failed = True
                raise
            finally:
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                self._local.function = outer
                with self._lock:
                    stats = self._functions.setdefault(name, FunctionStats())
                    stats.invocations += 1
                    stats.records += len(event.get("Records") or ()) or 1
                    stats.errors += failed
                    stats.wall_s += wall
                    stats.cpu_s += cpu
                    stats.last_end = time.monotonic()

        return metered

    def records(self, function: str) -> int:
        with self._lock:
            stats = self._functions.get(function)
            return stats.records if stats else 0

    def last_end(self, function: str) -> float:
        with self._lock:
            stats = self._functions.get(function)
            return stats.last_end if stats else 0.0

    # -- AWS calls --------------------------------------------------------------------------

    def register(self, events: Any) -> None:
        events.register("before-call", self._before_call)
        events.register("after-call", self._after_call)

    def _origin(self) -> tuple[str, str]:
        function = getattr(self._local, "function", None)
        if function is not None:
            return "billow", function
        thread = threading.current_thread().name
        if thread.startswith("billow-local-sqs-"):
            return "aws stand-in", "sqs poller " + thread.removeprefix("billow-local-sqs-")
        if thread.startswith("billow-local-stream-"):
            return "aws stand-in", "stream tailer " + thread.removeprefix("billow-local-stream-")
        return "harness", thread

    def _before_call(self, model: Any, params: dict[str, Any], context: Any, **_: Any) -> None:
        body = params.get("body") or b""
        request: dict[str, Any] = {}
        if body and _needs_body(model.service_model.service_name, model.name):
            with contextlib.suppress(ValueError):
                request = json.loads(body)
        context["bench_call"] = (self._origin(), request, time.perf_counter())

    def _after_call(self, http_response: Any, model: Any, context: Any, **_: Any) -> None:
        noted = context.get("bench_call")
        if noted is None:
            return
        (origin, function), request, started = noted
        service, operation = model.service_model.service_name, model.name
        succeeded = http_response.status_code < 300
        response: dict[str, Any] = {}
        if succeeded and operation in ("GetItem", "Query", "Scan") and http_response.content:
            with contextlib.suppress(ValueError):
                response = json.loads(http_response.content)
        with self._lock:
            stats = self._calls.setdefault((origin, function, service, operation), CallStats())
            stats.calls += 1
            stats.seconds += time.perf_counter() - started
            stats.errors += not succeeded
            stats.billed += 1
            if service == "dynamodb":
                self._dynamodb(origin, function, stats, operation, request, response, succeeded)
            elif service == "sqs":
                self._sqs(stats, operation, request, http_response)
            elif service == "events" and operation == "PutEvents":
                entries = request.get("Entries", [])
                stats.entries += len(entries)
                stats.billed += sum(_event_chunks(entry) for entry in entries) - 1

    def _dynamodb(
        self,
        origin: str,
        function: str,
        stats: CallStats,
        operation: str,
        request: dict[str, Any],
        response: dict[str, Any],
        succeeded: bool,
    ) -> None:
        tallied: list[tuple[str, str, float]] = []
        if operation in ("GetItem", "BatchGetItem", "Query", "Scan"):
            units = self._capacity.reads(operation, request, response) if succeeded else 0.0
            stats.read_units += units
            tallied.append(("read", f"{operation} {_item_kind(operation, request)}", units))
        elif operation in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            for kind, units, index_units in self._capacity.writes(operation, request, succeeded):
                stats.write_units += units
                stats.index_write_units += index_units
                stats.entries += 1
                tallied.append(("write", f"{operation} {kind}", units + index_units))
        elif operation not in ("DescribeTable", "CreateTable", "DeleteTable", "UpdateTimeToLive"):
            self.unknown_operations.add(operation)
        if origin == "billow":
            for direction, what, units in tallied:
                entry = self._items.setdefault((function, direction, what), [0.0, 0.0])
                entry[0] += 1
                entry[1] += units

    @staticmethod
    def _sqs(stats: CallStats, operation: str, request: dict[str, Any], response: Any) -> None:
        if operation in ("SendMessage", "SendMessageBatch"):
            bodies = [request] if operation == "SendMessage" else request.get("Entries", [])
            size = sum(len(str(entry.get("MessageBody", "")).encode()) for entry in bodies)
            stats.entries += len(bodies)
            stats.billed += _units(size, PAYLOAD_CHUNK) - 1
        elif operation == "ReceiveMessage" and response.status_code < 300:
            with contextlib.suppress(ValueError):
                messages = json.loads(response.content or b"{}").get("Messages", [])
                size = sum(len(message.get("Body", "").encode()) for message in messages)
                stats.entries += len(messages)
                stats.nonempty += bool(messages)
                stats.billed += _units(size, PAYLOAD_CHUNK) - 1

    # -- windows ----------------------------------------------------------------------------

    def take(self) -> Window:
        """What was counted since the last ``take``; counting starts over."""
        with self._lock:
            window = Window(
                self._calls, self._functions, self._log_sink.bytes - self._log_mark, self._items
            )
            self._calls, self._functions, self._items = {}, {}, {}
            self._log_mark = self._log_sink.bytes
        return window


def _needs_body(service: str, operation: str) -> bool:
    """Whether counting looks into the request: DynamoDB's, and what is sent or put."""
    return service == "dynamodb" or operation in ("SendMessage", "SendMessageBatch", "PutEvents")


def _item_kind(operation: str, request: dict[str, Any]) -> str:
    """What a read is after: the sort key's (or prefix's, or index key's) leading word."""
    if operation == "GetItem":
        key = str(request.get("Key", {}).get(TOPOLOGY.table.sort_key, {}).get("S", "?"))
        return key.split("#", 1)[0]
    if operation == "BatchGetItem":
        keys = [
            str(key.get(TOPOLOGY.table.sort_key, {}).get("S", "?")).split("#", 1)[0]
            for asked in request.get("RequestItems", {}).values()
            for key in asked.get("Keys", [])
        ]
        return "+".join(sorted(keys))
    values = request.get("ExpressionAttributeValues", {})
    prefix = next((v["S"] for k, v in values.items() if "prefix" in k and "S" in v), None)
    if prefix is not None:
        return f"{prefix.split('#')[0]}# (begins_with)"
    parts = next((v.get("S", "?") for k, v in values.items() if k == ":pk"), "?").split("#")
    kind = next((part for part in reversed(parts) if part.isupper()), parts[0])
    return f"{request.get('IndexName', 'table')}: {kind}"


def _event_chunks(entry: dict[str, Any]) -> int:
    """EventBridge's size of a PutEvents entry, billed per 64 KB."""
    size = sum(len(str(entry.get(field, "")).encode()) for field in ("Source", "DetailType"))
    size += len(str(entry.get("Detail", "")).encode())
    size += sum(len(resource.encode()) for resource in entry.get("Resources", []))
    size += 14 if "Time" in entry else 0
    return _units(size, PAYLOAD_CHUNK)


# -- the benchmark --------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    subscriptions: int
    workers: int
    webhook_endpoint: bool
    stripe_ms: float
    dynamodb_ms: float
    sqs_ms: float
    events_ms: float
    timeout_s: float
    setup: str


@dataclasses.dataclass
class RunResult:
    setup_s: float
    run_s: float
    """billing-run fired → the last charge recorded."""
    fire_s: float
    drain_s: float
    """billing-run fired → every Stripe webhook processed and the runtime idle."""
    load: float
    window: Window
    stripe: dict[str, Any]
    invoices: int
    succeeded: int
    listing_s: float
    listing: Window
    webhooks_received: int | None


class Progress:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._started = time.monotonic()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        self._out.write(f"[{elapsed:7.1f}s] {text}\n")
        self._out.flush()


def _stripe_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "sk_test_" + "".join(secrets.choice(alphabet) for _ in range(24))


def next_month_start(now: datetime) -> datetime:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _in_pool(
    workers: int, count: int, task: Callable[[int], Any], progress: Progress, label: str
) -> list[Any]:
    results: list[Any] = [None] * count
    step = max(count // 10, 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (index, result) in enumerate(
            pool.map(lambda i: (i, task(i)), range(count)), start=1
        ):
            results[index] = result
            if done % step == 0 or done == count:
                progress.say(f"  {label}: {done:,}/{count:,}")
    return results


class Bench:
    def __init__(self, options: Options, runtime: LocalRuntime, meter: Meter, out: TextIO) -> None:
        self.options = options
        self.runtime = runtime
        self.meter = meter
        self.out = out
        self.progress = Progress(out)
        self.stripe_key = _stripe_key()
        self.api_key = ""
        self.organization_id = ""
        self.receiver: WebhookReceiver | None = None

    def api(self, method: str, path: str, payload: Any = None) -> Any:
        status, body = http_json(
            method, f"{self.runtime.api_url}/api/v1{path}", payload, bearer(self.api_key), 120
        )
        if status != 200:
            raise RuntimeError(f"{method} {path} answered {status}: {body}")
        return body

    def stripe_config(self, method: str) -> Any:
        url = f"{self.runtime.stripe_url}/_config/requests?api_key={self.stripe_key}"
        status, body = http_json(method, url)
        if status != 200:
            raise RuntimeError(f"{method} /_config/requests answered {status}: {body}")
        return body

    # -- setup ------------------------------------------------------------------------------

    def setup(self) -> float:
        count, workers = self.options.subscriptions, self.options.workers
        started = time.monotonic()
        organization = self.runtime.create_organization("Billing bench")
        self.api_key, self.organization_id = organization.api_key, organization.id
        self.progress.say(
            f"setup: {count:,} Stripe customers with a default card ({workers} threads)"
        )
        client = stripe.StripeClient(
            self.stripe_key,
            base_addresses={
                "api": self.runtime.stripe_url,
                "files": self.runtime.stripe_url,
                "connect": self.runtime.stripe_url,
            },
            max_network_retries=2,
        )
        # Created before the account is connected, so their own events (customer.updated
        # on the default card) are not delivered to Billow: setup noise, not billing.
        stripe_ids = _in_pool(
            workers, count, lambda i: _stripe_customer(client, i), self.progress, "Stripe"
        )
        self.api(
            "POST",
            "/integrations/stripe",
            {"integration": {"secret_key": self.stripe_key, "create_customers": False}},
        )
        self.api(
            "POST",
            "/plans",
            {
                "plan": {
                    "name": "Bench monthly",
                    "code": PLAN_CODE,
                    "interval": "monthly",
                    "amount_cents": 4900,
                    "amount_currency": "EUR",
                    "pay_in_advance": False,
                }
            },
        )
        if self.options.setup == "api":
            # One request at a time: the local gateway runs concurrent requests through
            # one shared handler, and Powertools' resolver keeps per-request state on it.
            self.progress.say(f"setup: {count:,} customers and subscriptions through the API")
            create, threads = self._customer_and_subscription, 1
        else:
            self.progress.say(
                f"setup: {count:,} customers and subscriptions with Billow's services"
                f" ({workers} threads)"
            )
            create, threads = self._customer_and_subscription_direct, workers
        _in_pool(threads, count, lambda i: create(i, stripe_ids[i]), self.progress, "Billow")
        self._wait_idle("setup")
        invoked = self.meter.take().functions
        self.progress.say(
            "setup done; handler invocations (records): "
            + ", ".join(
                f"{name} {f.invocations:,} ({f.records:,})" for name, f in sorted(invoked.items())
            )
        )
        if self.options.webhook_endpoint:
            # Registered last: setup's own webhooks (customer.created, ...) go nowhere.
            self.receiver = WebhookReceiver(path="/hooks", keep=False)
            self.receiver.start()
            self.api(
                "POST",
                "/webhook_endpoints",
                {"webhook_endpoint": {"webhook_url": self.receiver.url}},
            )
        return time.monotonic() - started

    def _customer_and_subscription(self, index: int, stripe_id: str) -> None:
        external_id = f"bench-{index:06d}"
        customer = self.api(
            "POST",
            "/customers",
            {
                "customer": {
                    "external_id": external_id,
                    "currency": "EUR",
                    "billing_configuration": {
                        "payment_provider": "stripe",
                        "provider_customer_id": stripe_id,
                        "sync_with_provider": False,
                        "sync": True,  # the default card is imported within the request
                    },
                }
            },
        )["customer"]
        if not customer["billing_configuration"].get("provider_customer_id"):
            raise RuntimeError(f"customer {external_id} is not linked to Stripe: {customer}")
        self.api(
            "POST",
            "/subscriptions",
            {
                "subscription": {
                    "external_customer_id": external_id,
                    "plan_code": PLAN_CODE,
                    "external_id": f"{external_id}-sub",
                }
            },
        )

    def _customer_and_subscription_direct(self, index: int, stripe_id: str) -> None:
        """What ``_customer_and_subscription`` asks the API for, through the services its
        routes call, in this process (no HTTP, no API handler)."""
        external_id = f"bench-{index:06d}"
        customer = upsert_customer(
            dependencies(),
            self.organization_id,
            CustomerInput.model_validate(
                {
                    "external_id": external_id,
                    "currency": "EUR",
                    "billing_configuration": {
                        "payment_provider": "stripe",
                        "provider_customer_id": stripe_id,
                        "sync_with_provider": False,
                        "sync": True,
                    },
                }
            ),
        )
        if not customer.stripe_customer_id:
            raise RuntimeError(f"customer {external_id} is not linked to Stripe")
        create_subscription(
            dependencies(),
            self.organization_id,
            CreateSubscription.model_validate(
                {
                    "subscription": {
                        "external_customer_id": external_id,
                        "plan_code": PLAN_CODE,
                        "external_id": f"{external_id}-sub",
                    }
                }
            ),
            datetime.now(UTC),
        )

    def _wait_idle(self, phase: str, until: Callable[[], bool] | None = None) -> None:
        """Wait for ``until`` (checked in-process, for free), then for an idle runtime.

        ``wait_idle`` polls every queue's attributes 20 times a second, which would take
        CPU from the run it measures, so it is called only once the counts say done."""
        deadline = time.monotonic() + self.options.timeout_s
        reported = time.monotonic()
        while True:
            if until is None or until():
                try:
                    self.runtime.wait_idle(timeout=10.0)
                    if until is None or until():
                        return
                except TimeoutError:
                    pass
            else:
                time.sleep(0.2)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{phase}: still busy after {self.options.timeout_s:.0f}s")
            if time.monotonic() - reported >= 5:
                reported = time.monotonic()
                self.progress.say(f"  {phase}: {self._status()}")

    def _status(self) -> str:
        names = ("invoice_worker", "payments", "stripe_webhook", "stripe_events")
        return ", ".join(f"{name} {self.meter.records(name):,}" for name in names)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        count = self.options.subscriptions
        self.stripe_config("DELETE")
        self.meter.take()  # setup's counts are dropped
        load = os.getloadavg()[0]
        moment = next_month_start(datetime.now(UTC)) + timedelta(hours=1)
        self.progress.say(f"run: firing billing-run at {moment.isoformat()}")
        started = time.monotonic()
        queued = self.runtime.fire_schedule("billing-run", moment)["queued"]
        fired = time.monotonic()
        self.progress.say(
            f"  billing-run queued {queued:,} subscriptions in {fired - started:.1f}s"
        )
        # Every charge sends one payment_intent.succeeded back; wait until all have arrived
        # (one that only confirms a settled invoice goes no further) and the rest is done.
        self._wait_idle(
            "run",
            until=lambda: (
                self.meter.records("payments") >= queued
                and self.meter.records("stripe_webhook") >= self.meter.records("payments")
            ),
        )
        drained = time.monotonic()
        charged_at = self.meter.last_end("payments")
        window = self.meter.take()
        stripe_counts = self.stripe_config("GET")
        self.progress.say("verify: counting invoices through the API")
        verify_started = time.monotonic()
        total = self.api("GET", "/invoices?per_page=1")["meta"]["total_count"]
        succeeded = self.api("GET", "/invoices?payment_status=succeeded&per_page=1")["meta"][
            "total_count"
        ]
        listing_s = (time.monotonic() - verify_started) / 2
        listing = self.meter.take()
        if not total == succeeded == count:
            raise RuntimeError(
                f"expected {count:,} succeeded invoices; found {total:,} invoices, "
                f"{succeeded:,} succeeded"
            )
        return RunResult(
            setup_s=0.0,
            run_s=charged_at - started,
            fire_s=fired - started,
            drain_s=drained - started,
            load=load,
            window=window,
            stripe=stripe_counts,
            invoices=total,
            succeeded=succeeded,
            listing_s=listing_s,
            listing=listing,
            webhooks_received=self.receiver.count if self.receiver else None,
        )


def _stripe_customer(client: stripe.StripeClient, index: int) -> str:
    """The calls of ``tests/api/billing_helpers.py::stripe_customer``, made in Stripe."""
    customer = client.v1.customers.create(params={"name": f"bench-{index:06d}"})
    card = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": VISA, "exp_month": 12, "exp_year": 2035, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(card.id, params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    return str(customer.id)


# -- the report -----------------------------------------------------------------------------


def _latency_ms(options: Options, service: str) -> float:
    return {
        "dynamodb": options.dynamodb_ms,
        "sqs": options.sqs_ms,
        "events": options.events_ms,
    }.get(service, options.events_ms)


class Report:
    """The tables: per invoice, per function, and the cost they imply."""

    def __init__(self, options: Options, result: RunResult, out: TextIO) -> None:
        self.options = options
        self.result = result
        self.window = result.window
        self.per = 1 / result.invoices
        self.out = out
        self.stripe_total = int(result.stripe["total"])
        self.by_endpoint: dict[str, int] = result.stripe["by_endpoint"]

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def header(self, text: str) -> None:
        self.line(text)
        self.line("  " + "-" * (len(text) - 2))

    def print(self) -> None:
        self.summary()
        self.calls()
        self.items()
        gb_s, invocations = self.functions()
        self.stand_in()
        self.cost(gb_s, invocations)
        self.findings()

    def summary(self) -> None:
        result, n = self.result, self.result.invoices
        self.line()
        self.line(
            f"Billow billing run: {n:,} subscriptions, local mode, {os.cpu_count()} CPUs"
            f" (load average {result.load:.1f} when the run started)"
        )
        self.line(
            f"  setup        {result.setup_s:8.1f} s  Stripe customers with a card,"
            " customers, subscriptions"
        )
        self.line(
            f"  run          {result.run_s:8.1f} s  billing-run fired → last invoice charged:"
            f" {n / result.run_s:.2f} invoices/s"
        )
        self.line(f"    billing-run handler {result.fire_s:.1f} s (due-index query, SQS fan-out)")
        self.line(
            f"  until quiet  {result.drain_s:8.1f} s  + every payment_intent.succeeded"
            " processed, every Lago webhook delivered"
        )
        self.line(
            f"  verified     {n:,} invoices, {result.succeeded:,} with payment_status"
            " succeeded (GET /api/v1/invoices)"
        )
        self.line()
        endpoints = ", ".join(f"{name} ×{calls:,}" for name, calls in self.by_endpoint.items())
        self.line(
            f"Stripe calls per charged invoice: {self.stripe_total * self.per:.2f}  ({endpoints})"
        )

    def calls(self) -> None:
        per = self.per
        self.line()
        self.line(
            "AWS requests per invoice made by Billow's code (calls inside handler invocations):"
        )
        self.header(
            f"  {'service':<15}{'operation':<20}{'calls':>7}{'RRU':>8}{'WRU':>8}{'GSI WRU':>9}"
            f"{'billed':>8}{'entries':>9}{'local ms':>10}"
        )
        by_operation: dict[tuple[str, str], CallStats] = {}
        for (_, _, service, operation), stats in self.window.select("billow"):
            by_operation.setdefault((service, operation), CallStats()).add(stats)
        for (service, operation), stats in sorted(by_operation.items()):
            self.line(
                f"  {service:<15}{operation:<20}{stats.calls * per:>7.2f}"
                f"{stats.read_units * per:>8.2f}{stats.write_units * per:>8.2f}"
                f"{stats.index_write_units * per:>9.2f}{stats.billed * per:>8.2f}"
                f"{stats.entries * per:>9.2f}{stats.seconds * 1000 / stats.calls:>10.1f}"
            )
        self.line(
            "  RRU/WRU: DynamoDB read/write request units (GSI WRU: the index's writes);"
            " billed: SQS requests or EventBridge events (64 KB each); entries: items"
            " written, messages sent, events put; local ms: moto's answer time here"
        )

    def items(self) -> None:
        """Which items each function reads and writes, per invoice: repeated reads show."""
        for direction, units in (("read", "RRU"), ("write", "WRU")):
            self.line()
            self.line(f"DynamoDB {direction}s per invoice, by function and item (sort key):")
            self.header(f"  {'function':<17}{'request and item':<44}{direction + 's':>8}{units:>9}")
            for (function, kind, what), (count, used) in sorted(self.window.items.items()):
                if kind == direction:
                    self.line(
                        f"  {function:<17}{what:<44}{count * self.per:>8.2f}{used * self.per:>9.2f}"
                    )

    def _model_ms(self, name: str, stats: FunctionStats) -> float:
        """A function's billed duration in AWS, modelled from what was measured here: its
        CPU time at Lambda's CPU share, plus an assumed latency per call it waited for.
        Only charges call Stripe in this run, so Stripe's latency is the payments'."""
        options, memory = self.options, TOPOLOGY.function(name).memory_mb
        waited = sum(
            calls.calls * _latency_ms(options, key[2])
            for key, calls in self.window.select("billow", function=name)
        )
        if name == "payments":
            waited += self.stripe_total * options.stripe_ms
        return stats.cpu_s * 1000 * max(1.0, FULL_VCPU_MB / memory) + waited

    def functions(self) -> tuple[float, int]:
        """The Lambda table; returns the run's GB-seconds and invocations."""
        options = self.options
        self.line()
        self.line("Lambda, per function (warm; wall and CPU measured here, modelled ms costed):")
        self.header(
            f"  {'function':<17}{'MB':>5}{'invocations':>12}{'records':>9}{'wall ms':>9}"
            f"{'CPU ms':>8}{'model ms':>10}{'GB-s / 1k invoices':>20}"
        )
        gb_s_total, invocations = 0.0, 0
        for name, stats in sorted(self.window.functions.items()):
            memory = TOPOLOGY.function(name).memory_mb
            model_ms = self._model_ms(name, stats)
            gb_s = memory / 1024 * model_ms / 1000
            gb_s_total += gb_s
            invocations += stats.invocations
            self.line(
                f"  {name:<17}{memory:>5}{stats.invocations:>12,}{stats.records:>9,}"
                f"{stats.wall_s * 1000 / stats.invocations:>9.1f}"
                f"{stats.cpu_s * 1000 / stats.invocations:>8.1f}"
                f"{model_ms / stats.invocations:>10.1f}{gb_s * self.per * 1000:>20.2f}"
            )
        failed = {name: f.errors for name, f in self.window.functions.items() if f.errors}
        if failed:
            self.line(f"  invocations that failed or reported failed records: {failed}")
        self.line(
            f"  model ms = CPU ms × {FULL_VCPU_MB}/MB (Lambda's CPU share below"
            f" {FULL_VCPU_MB:,} MB) + per call: DynamoDB {options.dynamodb_ms:g} ms,"
            f" SQS {options.sqs_ms:g} ms, EventBridge {options.events_ms:g} ms,"
            f" Stripe {options.stripe_ms:g} ms (assumed)"
        )
        return gb_s_total, invocations

    def stand_in(self) -> None:
        self.line()
        self.line("The local runtime standing in for Lambda's event source mappings:")
        self.header(
            f"  {'service':<17}{'operation':<20}{'calls / invoice':>16}{'messages received':>19}"
        )
        stand_in: dict[tuple[str, str], CallStats] = {}
        for (_, _, service, operation), stats in self.window.select("aws stand-in"):
            stand_in.setdefault((service, operation), CallStats()).add(stats)
        for (service, operation), stats in sorted(stand_in.items()):
            self.line(
                f"  {service:<17}{operation:<20}{stats.calls * self.per:>16.2f}{stats.entries:>19,}"
            )

    def cost(self, gb_s: float, invocations: int) -> None:
        window, per = self.window, self.per
        dynamo = window.total("billow", "dynamodb")
        targets = {"sqs poller " + rule.queue for rule in TOPOLOGY.rules}
        deliveries = sum(
            stats.entries
            for key, stats in window.select("aws stand-in", "sqs")
            if key[3] == "ReceiveMessage" and key[1] in targets
        )
        # Receives that brought messages and the deletes after them; empty long polls are a
        # fixed cost per queue in AWS (a 1 s loop here), not a cost per invoice.
        polled = sum(
            stats.nonempty if key[3] == "ReceiveMessage" else stats.calls
            for key, stats in window.select("aws stand-in", "sqs")
        )
        log_kb = (window.log_bytes + invocations * LAMBDA_PLATFORM_LOG_BYTES) / 1000
        billow = {
            service: window.total("billow", service)
            for service in ("events", "sqs", "secretsmanager", "sns")
        }
        rows: list[tuple[str, float, str, float]] = [
            ("DynamoDB writes", dynamo.write_units + dynamo.index_write_units, "DynamoDB WRU", 0),
            ("DynamoDB reads", dynamo.read_units, "DynamoDB RRU", 0),
            ("EventBridge events put", billow["events"].billed, "EventBridge event", 0),
            ("SQS: Billow's sends", billow["sqs"].billed, "SQS request", 0),
            ("SQS: EventBridge → queues", deliveries, "SQS request", 0),
            ("SQS: Lambda's pollers", polled, "SQS request", 0),
            ("Lambda requests", invocations, "Lambda request", 0),
            ("Lambda duration (x86 price)", gb_s, "GB-s", LAMBDA_GB_S),
            ("Secrets Manager", billow["secretsmanager"].calls, "Secrets Manager call", 0),
            ("SNS", billow["sns"].billed, "SNS request", 0),
            ("CloudWatch Logs ingestion", log_kb, "KB", LOGS_INGESTED_GB / 1e6),
        ]
        self.line()
        self.line("AWS cost per million invoices, us-east-1 on-demand list prices:")
        header = (
            f"  {'item':<30}{'per invoice':>12}  {'unit':<22}{'$ per 1M units':>15}"
            f"{'$ / 1M invoices':>17}"
        )
        self.header(header)
        total = 0.0
        for label, quantity, unit, price in rows:
            per_million_units = PER_MILLION[unit] if unit in PER_MILLION else price * 1e6
            dollars = quantity * per * per_million_units
            total += dollars
            self.line(
                f"  {label:<30}{quantity * per:>12.3f}  {unit:<22}{per_million_units:>15,.4g}"
                f"{dollars:>17.2f}"
            )
        self.line("  " + "-" * (len(header) - 2))
        self.line(f"  {'total':<30}{'':>12}  {'':<22}{'':>15}{total:>17.2f}")
        arm = gb_s * per * (LAMBDA_GB_S - LAMBDA_ARM_GB_S) * 1e6
        self.line(f"  on arm64 (what the stack deploys) Lambda duration costs ${arm:.2f} less")
        self.line()
        self.line("Assumptions:")
        for text in ASSUMPTIONS:
            self.line(f"  - {text}")

    def findings(self) -> None:
        result = self.result
        listed = result.listing.total("billow", "dynamodb", "api")
        self.line()
        self.line("Found on the way:")
        self.line(
            f"  - GET /api/v1/invoices?per_page=1: {result.listing_s:.2f} s,"
            f" {listed.calls / 2:.0f} DynamoDB calls and {listed.read_units / 2:,.0f} RRU per"
            f" request with {result.invoices:,} invoices (bench/lists.py compares a"
            " page's cost at 200 and at 20,000 items)"
        )
        if result.webhooks_received is not None:
            self.line(
                "  - Lago webhooks the bench's endpoint received during the run:"
                f" {result.webhooks_received:,}"
            )
        worker = self.window.functions.get("invoice_worker")
        if worker is not None:
            self.line(
                "  - Local throughput is set by invoice_worker:"
                f" {worker.wall_s * 1000 / worker.records:.0f} ms wall per subscription on"
                " the one thread that polls invoice-work (in AWS up to"
                f" {TOPOLOGY.queue('invoice-work').max_concurrency} concurrent invocations);"
                " the CPU goes to moto and botocore, a few ms per AWS request"
            )


ASSUMPTIONS = (
    "DynamoDB on-demand: reads in 4 KB units (eventually consistent and GSI reads at half),"
    " a Query page costed on the sum of the items it reads; writes in 1 KB units of the"
    " larger of the item before and after, transactions at 2× per item; GSI writes (the"
    " whole item under projection ALL, else its keys and projected attributes) when an item"
    " enters, changes in or leaves an index, not doubled by transactions; item sizes"
    " computed from the requests and answers; storage not included",
    "EventBridge: $1 per million events put (each 64 KB of an entry); delivering to SQS"
    " targets costs EventBridge nothing, but each delivery is an SQS request on the queue",
    "SQS: every API request (each 64 KB), whoever makes it; Lambda's pollers' ReceiveMessage"
    " and DeleteMessageBatch are billed too: costed as the local runtime made them, while"
    " AWS's pollers also long-poll idle queues around the clock (a fixed cost per queue)",
    "Lambda: warm invocations (cold starts are in `make bench`), duration modelled as"
    " above; DynamoDB Streams reads by Lambda are free; arm64 is 20% cheaper than the x86"
    " price used",
    "CloudWatch Logs: what the handlers wrote (Powertools logs, EMF metrics) plus ~320 bytes"
    " of START/END/REPORT per invocation, $0.50/GB ingested; storage, custom-metric and"
    " X-Ray charges (tracing is active) not included; free tiers not deducted",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=2000, help="1 to 100,000")
    parser.add_argument("--workers", type=int, default=8, help="setup threads")
    parser.add_argument(
        "--no-webhook-endpoint",
        action="store_true",
        help="do not register a Lago webhook endpoint (by default one local receiver)",
    )
    parser.add_argument(
        "--setup",
        choices=("direct", "api"),
        default="direct",
        help="customers and subscriptions through the services the API's routes call,"
        " --workers at a time (direct), or through the HTTP API one request at a time (api)",
    )
    parser.add_argument("--stripe-ms", type=float, default=500.0)
    parser.add_argument("--dynamodb-ms", type=float, default=5.0)
    parser.add_argument("--sqs-ms", type=float, default=10.0)
    parser.add_argument("--events-ms", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per phase")
    args = parser.parse_args()
    if not 1 <= args.subscriptions <= 100_000:
        parser.error("--subscriptions must be between 1 and 100,000")
    options = Options(
        subscriptions=args.subscriptions,
        workers=args.workers,
        webhook_endpoint=not args.no_webhook_endpoint,
        stripe_ms=args.stripe_ms,
        dynamodb_ms=args.dynamodb_ms,
        sqs_ms=args.sqs_ms,
        events_ms=args.events_ms,
        timeout_s=args.timeout or max(300.0, args.subscriptions * 0.5),
        setup=args.setup,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = sys.stdout
    sink = _LogSink()
    meter = Meter(sink)
    original_invoke = Functions.invoke
    Functions.invoke = meter.wrap_invoke(original_invoke)  # type: ignore[method-assign]
    try:
        with metered_runtime(sink, meter.register) as runtime:
            # The runtime's own calls (pollers, tailer, wait_idle) are counted too, apart.
            for client in runtime._clients.values():
                meter.register(client.meta.events)
            bench = Bench(options, runtime, meter, out)
            setup_s = bench.setup()
            result = dataclasses.replace(bench.run(), setup_s=setup_s)
        Report(options, result, out).print()
        if meter.unknown_operations:
            out.write(f"(DynamoDB operations not costed: {sorted(meter.unknown_operations)})\n")
    finally:
        Functions.invoke = original_invoke  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
