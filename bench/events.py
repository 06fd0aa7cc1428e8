"""What usage events cost: ingestion through the real API handler in batches of 100, the
aggregator that folds them, and the reads that bill a subscription at any volume.

Local Billow runs with moto in a process of its own (``bench.support``). Every AWS call
Billow's handlers make is counted on boto3's default session, by the function making it:
requests, and DynamoDB's read and write units from the wire-format sizes of the items
(4 KB read units, halved for eventually consistent reads; 1 KB write units, doubled in
transactions). The handlers' CPU time is measured per invocation (``thread_time``): one
invocation runs on one thread, so CPU seconds are vCPU seconds.

Two subscriptions of one plan (a count and a sum charge) receive ``--small`` and
``--large`` events; each is then billed at its period's end and the reads the invoice
worker made for it are compared.

Usage: python bench/events.py [--small 10] [--large 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "billow" / "python", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from bench.support import item_size, metered_runtime  # noqa: E402
from billow.composition import dependencies  # noqa: E402
from billow.services.subscription_billing import bill_due  # noqa: E402
from billow.topology import TOPOLOGY  # noqa: E402
from local.lambda_invocation import Functions  # noqa: E402
from tests.support import bearer, http_json  # noqa: E402

BATCH = 100
PRICES = {
    "API Gateway HTTP API request": 1.00,
    "Lambda request": 0.20,
    "DynamoDB WRU": 0.625,
    "DynamoDB RRU": 0.125,
}
"""Dollars per million, us-east-1 list prices (on-demand DynamoDB since November 2024)."""
LAMBDA_ARM_GB_S = 0.0000133334
LAGO_EVENTS_PER_S = 10_000
"""Lago's published ingestion rate through its REST batch endpoint."""
LAMBDA_CONCURRENCY = 1_000
"""Lambda's default concurrent executions per account and region."""
FULL_VCPU_MB = 1769


@dataclasses.dataclass
class Usage:
    invocations: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    requests: dict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    read_units: float = 0.0
    write_units: float = 0.0


def _read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def _write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


class Meter:
    """Billow's AWS calls and CPU, per function, on boto3's default session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.by_function: dict[str, Usage] = defaultdict(Usage)

    @contextlib.contextmanager
    def measuring(self, label: str) -> Any:
        """Count the calls made in this block (on this thread) under ``label``."""
        self._local.function = label
        try:
            yield
        finally:
            self._local.function = None

    def take(self) -> dict[str, Usage]:
        with self._lock:
            taken, self.by_function = self.by_function, defaultdict(Usage)
        return taken

    def wrap_invoke(self, invoke: Callable[..., Any]) -> Callable[..., Any]:
        def metered(functions: Any, name: str, event: dict[str, Any]) -> Any:
            self._local.function = name
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return invoke(functions, name, event)
            finally:
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                self._local.function = None
                with self._lock:
                    usage = self.by_function[name]
                    usage.invocations += 1
                    usage.cpu_s += cpu
                    usage.wall_s += wall

        return metered

    def register(self, events: Any) -> None:
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def _before(self, params: dict[str, Any], context: Any, **_: Any) -> None:
        context["bench_request"] = json.loads(params.get("body") or b"{}")

    def _after(self, http_response: Any, model: Any, context: Any, **_: Any) -> None:
        function = getattr(self._local, "function", None)
        if function is None:
            return
        request = context.get("bench_request", {})
        answer = json.loads(http_response.content or b"{}")
        reads, writes = _units(model.name, request, answer)
        with self._lock:
            usage = self.by_function[function]
            usage.requests[model.name] += 1
            usage.read_units += reads
            usage.write_units += writes


def _units(operation: str, request: dict[str, Any], answer: dict[str, Any]) -> tuple[float, float]:
    consistent = bool(request.get("ConsistentRead")) and "IndexName" not in request
    if operation == "GetItem":
        return _read_units(item_size(answer.get("Item") or {}), consistent), 0
    if operation == "Query":
        size = sum(item_size(item) for item in answer.get("Items", []))
        return _read_units(size, consistent), 0
    if operation == "BatchGetItem":
        ((table, asked),) = request["RequestItems"].items()
        found = answer.get("Responses", {}).get(table, [])
        strong = bool(asked.get("ConsistentRead"))
        # An item asked for but absent still costs the read of an empty item.
        missing = len(asked["Keys"]) - len(found)
        return sum(_read_units(item_size(i), strong) for i in found) + missing * _read_units(
            0, strong
        ), 0
    if operation == "PutItem":
        return 0, _write_units(item_size(request["Item"]))
    if operation == "BatchWriteItem":
        ((_, writes),) = request["RequestItems"].items()
        return 0, sum(_write_units(item_size(w["PutRequest"]["Item"])) for w in writes)
    if operation == "TransactWriteItems":
        total = 0
        for action in request["TransactItems"]:
            ((kind, body),) = action.items()
            if kind == "Put":
                total += 2 * _write_units(item_size(body["Item"]))
            elif kind in ("Update", "Delete", "ConditionCheck"):
                total += 2
        return 0, total
    if operation in ("UpdateItem", "DeleteItem"):
        return 0, 1
    return 0, 0


class Bench:
    def __init__(self, runtime: Any, meter: Meter, out: io.TextIOBase | Any) -> None:
        self.runtime = runtime
        self.meter = meter
        self.out = out
        status, body = http_json(
            "POST", f"{runtime.api_url}/_local/organizations", {"name": "Events bench"}
        )
        assert status == 200, body
        self.headers = bearer(body["organization"]["api_key"])
        self.organization_id = body["organization"]["id"]

    def api(self, method: str, path: str, payload: Any = None) -> Any:
        status, body = http_json(
            method, f"{self.runtime.api_url}/api/v1{path}", payload, headers=self.headers
        )
        assert status == 200, (path, status, body)
        return body

    def setup(self) -> None:
        calls = self.api(
            "POST",
            "/billable_metrics",
            {
                "billable_metric": {
                    "name": "Calls",
                    "code": "calls",
                    "aggregation_type": "count_agg",
                }
            },
        )["billable_metric"]
        tokens = self.api(
            "POST",
            "/billable_metrics",
            {
                "billable_metric": {
                    "name": "Tokens",
                    "code": "tokens",
                    "aggregation_type": "sum_agg",
                    "field_name": "tokens",
                }
            },
        )["billable_metric"]
        self.api(
            "POST",
            "/plans",
            {
                "plan": {
                    "name": "Metered",
                    "code": "metered",
                    "interval": "monthly",
                    "amount_cents": 1000,
                    "amount_currency": "EUR",
                    "charges": [
                        {
                            "billable_metric_id": calls["lago_id"],
                            "charge_model": "standard",
                            "properties": {"amount": "0.001"},
                        },
                        {
                            "billable_metric_id": tokens["lago_id"],
                            "charge_model": "package",
                            "properties": {"amount": "2", "package_size": 1000},
                        },
                    ],
                }
            },
        )

    def subscribe(self, name: str) -> tuple[datetime, datetime, str]:
        self.api("POST", "/customers", {"customer": {"external_id": f"{name}-customer"}})
        sub = self.api(
            "POST",
            "/subscriptions",
            {
                "subscription": {
                    "external_customer_id": f"{name}-customer",
                    "plan_code": "metered",
                    "external_id": name,
                    "billing_time": "anniversary",
                }
            },
        )["subscription"]
        return (
            datetime.fromisoformat(sub["started_at"]),
            datetime.fromisoformat(sub["current_billing_period_ending_at"]),
            sub["lago_id"],
        )

    def send(self, name: str, count: int, started: datetime, workers: int = 4) -> float:
        """``count`` events in batches of 100, half calls and half tokens; wall seconds."""
        moment = int(started.timestamp()) + 1
        batches = [
            [
                {
                    "transaction_id": f"{name}-{n}",
                    "external_subscription_id": name,
                    "code": "calls" if n % 2 else "tokens",
                    "timestamp": moment + n % 3600,
                    "properties": {"tokens": 7},
                }
                for n in range(start, min(count, start + BATCH))
            ]
            for start in range(0, count, BATCH)
        ]
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not batches:
                        return
                    batch = batches.pop()
                self.api("POST", "/events/batch", {"events": batch})

        began = time.perf_counter()
        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - began

    def bill(self, name: str, lago_id: str, end: datetime) -> Usage:
        """What the invoice worker does for the subscription at its period's end (the
        use case it runs, called directly so that each subscription is measured alone)."""
        self.meter.take()
        with self.meter.measuring("bill"):
            outcome, _ = bill_due(dependencies(), self.organization_id, name, lago_id, end)
        assert outcome == "billed", outcome
        return self.meter.take()["bill"]


def _memory(function: str) -> int:
    return TOPOLOGY.function(function).memory_mb


def report(out: Any, events: int, api: Usage, folds: Usage, bills: dict[int, Usage]) -> None:
    line = out.write
    per_event = 1 / events
    vcpu_share = {f: min(1.0, _memory(f) / FULL_VCPU_MB) for f in ("api", "usage_aggregator")}
    rate = events / api.cpu_s if api.cpu_s else 0.0
    line(f"Ingestion: {events:,} events in batches of {BATCH} through the API handler\n")
    line(
        f"  API handler CPU: {api.cpu_s * 1000 / api.invocations:.1f} ms per batch"
        f" → {rate:,.0f} events/s per vCPU\n"
    )
    fleet = rate * LAMBDA_CONCURRENCY * vcpu_share["api"]
    line(
        f"  At Lambda's default {LAMBDA_CONCURRENCY:,} concurrent executions of the API"
        f" function ({_memory('api')} MB = {vcpu_share['api']:.2f} vCPU each):"
        f" {fleet:,.0f} events/s ({fleet / LAGO_EVENTS_PER_S:.0f}× Lago's published"
        f" {LAGO_EVENTS_PER_S:,}/s)\n"
    )
    line("  DynamoDB per event (API handler + aggregator):\n")
    for label, usage in (("API handler", api), ("aggregator", folds)):
        requests = ", ".join(
            f"{name} {count * per_event:.3f}" for name, count in sorted(usage.requests.items())
        )
        line(
            f"    {label:<12} requests {sum(usage.requests.values()) * per_event:.3f}"
            f" ({requests}); WRU {usage.write_units * per_event:.3f};"
            f" RRU {usage.read_units * per_event:.3f}\n"
        )
    costs = {
        "API Gateway HTTP API request": api.invocations,
        "Lambda request": api.invocations + folds.invocations,
        "DynamoDB WRU": api.write_units + folds.write_units,
        "DynamoDB RRU": api.read_units + folds.read_units,
    }
    line(
        "  AWS cost per million events (us-east-1 list prices; stream reads by Lambda are free):\n"
    )
    total = 0.0
    for label, quantity in costs.items():
        dollars = quantity * per_event * PRICES[label]
        total += dollars
        line(f"    {label:<30} {quantity * per_event:>10.4f} per event  ${dollars:>7.4f}\n")
    for function, usage in (("api", api), ("usage_aggregator", folds)):
        gb_s = usage.wall_s * _memory(function) / 1024
        dollars = gb_s * per_event * 1e6 * LAMBDA_ARM_GB_S
        total += dollars
        label = f"Lambda {function} GB-ms (arm64)"
        line(f"    {label:<30} {gb_s * per_event * 1000:>10.4f} per event  ${dollars:>7.4f}\n")
    line(f"    {'total':<30} {'':>10}             ${total:>7.4f}\n")
    small, large = sorted(bills)
    line("Billing reads (the invoice worker, one subscription at its period's end):\n")
    for count in (small, large):
        usage = bills[count]
        line(
            f"  {count:>7,} events: {sum(usage.requests.values())} requests,"
            f" {usage.read_units:.1f} read units\n"
        )
    ratio = bills[large].read_units / bills[small].read_units if bills[small].read_units else 0
    line(f"  ratio {ratio:.2f}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=100_000)
    args = parser.parse_args()
    out = sys.stdout
    meter = Meter()
    original_invoke = Functions.invoke
    Functions.invoke = meter.wrap_invoke(original_invoke)  # type: ignore[method-assign]
    sink = io.StringIO()
    try:
        with metered_runtime(sink, meter.register) as runtime:
            bench = Bench(runtime, meter, out)
            bench.setup()
            small_start, small_end, small_id = bench.subscribe("small")
            large_start, large_end, large_id = bench.subscribe("large")
            bench.send("small", args.small, small_start)
            runtime.wait_idle(timeout=600)
            meter.take()
            seconds = bench.send("large", args.large, large_start)
            runtime.wait_idle(timeout=3600)
            taken = meter.take()
            out.write(f"(sent {args.large:,} events in {seconds:.1f} s of wall time locally)\n")
            bills = {
                args.small: bench.bill("small", small_id, small_end),
                args.large: bench.bill("large", large_id, large_end),
            }
            report(out, args.large, taken["api"], taken["usage_aggregator"], bills)
    finally:
        Functions.invoke = original_invoke  # type: ignore[method-assign]
        with contextlib.suppress(Exception):
            sink.close()


if __name__ == "__main__":
    main()
