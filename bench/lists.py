"""What a list page costs at 200 and at 20,000 items: ``GET /invoices`` and ``GET /customers``.

Two organizations share one table: a small one (``--small``, 200 customers and 200
invoices) and a large one (``--large``, 20,000 of each). For page 1 and page 50 (20 per
page) of each list, it prints Billow's DynamoDB requests and read units per request and
the median latency through the local API, for both sizes side by side, and their ratio.

Seeding: one customer and one one-off invoice are made through the API; the rest are
copies of them (new ids, external ids, sequential ids and creation times, one invoice per
customer) written with BatchWriteItem. Each copy is the item the use cases write, built by
the Store's own ``customers.item``/``invoices.item``; the counter items (when the code has
them, ``billow.adapters.listing``) are written with the totals that the use cases' ADDs
reach, shard by shard. Seeding 20,000 objects through HTTP one by one would take an hour.
The same script runs against older code, which has no counters (it lists by reading all).

Read units are DynamoDB's, from the wire-format sizes of what each call returns (4 KB
units, half for eventually consistent reads and index reads, each BatchGetItem item
rounded up on its own); moto runs in a process of its own with local mode's fixes.

Usage: python bench/lists.py [--small 200] [--large 20000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import math
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "billow" / "python", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import boto3  # noqa: E402

from bench.support import item_size, metered_runtime  # noqa: E402
from billow.composition import dependencies  # noqa: E402
from billow.domain.customers import Customer  # noqa: E402
from billow.domain.invoices import Invoice  # noqa: E402
from tests.support import bearer, http_json  # noqa: E402

PER_PAGE = 20
PAGES = (1, 50)
LISTS = ("invoices", "customers")


@dataclasses.dataclass
class Reads:
    requests: int = 0
    read_units: float = 0.0


class ReadMeter:
    """Billow's DynamoDB calls on boto3's default session (the API handler's clients)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.current: Reads | None = None

    def register(self, events: Any) -> None:
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        self._local.request = json.loads(params.get("body") or b"{}")

    def _after(self, http_response: Any, model: Any, **_: Any) -> None:
        if self.current is None:
            return
        request = getattr(self._local, "request", {})
        answer = json.loads(http_response.content or b"{}")
        self.current.requests += 1
        self.current.read_units += read_units(model.name, request, answer)


def _units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def read_units(operation: str, request: dict[str, Any], answer: dict[str, Any]) -> float:
    consistent = bool(request.get("ConsistentRead")) and "IndexName" not in request
    if operation == "GetItem":
        return _units(item_size(answer.get("Item") or {}), consistent)
    if operation == "Query":
        return _units(sum(item_size(item) for item in answer.get("Items", [])), consistent)
    if operation == "BatchGetItem":
        ((table, asked),) = request["RequestItems"].items()
        strong = bool(asked.get("ConsistentRead"))
        return sum(
            _units(item_size(item), strong) for item in answer.get("Responses", {}).get(table, [])
        )
    return 0.0


def _batches(items: list[dict[str, Any]], size: int = 25) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _counter_items(organization_id: str, objects: list[Any], listing: Any) -> list[dict[str, Any]]:
    """The counter items the use cases' ADDs leave after creating ``objects``."""
    from billow.adapters import listing as lists  # noqa: PLC0415

    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for obj in objects:
        shown = listing(obj)
        for tally in shown.tallies:
            key = lists.counter_key(
                organization_id, shown.family, tally.scope, lists.shard_of(obj.lago_id)
            )
            totals[(key["PK"], key["SK"])][tally.name] += 1
    return [
        {"PK": pk, "SK": sk, "kind": "counter", **counts} for (pk, sk), counts in totals.items()
    ]


def seed(api: str, organization_id: str, api_key: str, count: int) -> None:
    """``count`` customers and ``count`` invoices, one each, newest last."""
    store = dependencies().store
    status, body = http_json(
        "POST",
        f"{api}/add_ons",
        {"add_on": {"code": "fee", "name": "Fee", "amount_cents": 500, "amount_currency": "EUR"}},
        bearer(api_key),
    )
    assert status == 200, body
    status, body = http_json(
        "POST",
        f"{api}/customers",
        {"customer": {"external_id": "c-0", "currency": "EUR"}},
        bearer(api_key),
    )
    assert status == 200, body
    status, body = http_json(
        "POST",
        f"{api}/invoices",
        {"invoice": {"external_customer_id": "c-0", "fees": [{"add_on_code": "fee"}]}},
        bearer(api_key),
    )
    assert status == 200, body
    customer_template = store.customers.get(organization_id, "c-0")
    invoice_template = store.invoices.get(organization_id, body["invoice"]["lago_id"])
    assert customer_template is not None and invoice_template is not None
    start = datetime(2024, 1, 1, tzinfo=UTC)
    customers: list[Customer] = []
    invoices: list[Invoice] = []
    for n in range(1, count):
        moment = (start + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
        customers.append(
            customer_template.model_copy(
                update={
                    "external_id": f"c-{n}",
                    "lago_id": f"{organization_id[:8]}-customer-{n:08d}",
                    "sequential_id": n + 1,
                    "created_at": moment,
                }
            )
        )
        invoices.append(
            invoice_template.model_copy(
                update={
                    "lago_id": f"{organization_id[:8]}-invoice-{n:08d}",
                    "sequential_id": n + 1,
                    "number": f"{invoice_template.number}-{n}",
                    "external_customer_id": f"c-{n}",
                    "lago_customer_id": customers[-1].lago_id,
                    "created_at": moment,
                    "issuing_date": moment[:10],
                }
            )
        )
    items = [store.customers.item(c) for c in customers]
    items += [store.invoices.item(i) for i in invoices]
    with contextlib.suppress(ImportError):
        from billow.adapters.billing_records import invoice_listing  # noqa: PLC0415
        from billow.adapters.customer_records import customer_listing  # noqa: PLC0415

        # Counters hold the template's counts too: their ADDs are added to the seeds'.
        counters = _counter_items(
            organization_id, [customer_template, *customers], customer_listing
        )
        counters += _counter_items(organization_id, [invoice_template, *invoices], invoice_listing)
        items += counters
    table = boto3.resource("dynamodb").Table(store.table_name)
    with table.batch_writer() as writer:
        for item in items:
            writer.put_item(Item=item)


def measure(
    api: str, api_key: str, meter: ReadMeter, path: str, repeat: int
) -> tuple[Reads, float]:
    for _ in range(2):  # warm caches and code paths
        http_json("GET", f"{api}{path}", None, bearer(api_key))
    timings = []
    reads = Reads()
    for attempt in range(repeat):
        meter.current = Reads() if attempt == 0 else None
        started = time.perf_counter()
        status, body = http_json("GET", f"{api}{path}", None, bearer(api_key))
        timings.append(time.perf_counter() - started)
        assert status == 200, body
        if attempt == 0:
            assert meter.current is not None
            reads = meter.current
    meter.current = None
    return reads, statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sink = io.StringIO()
    meter = ReadMeter()
    results: dict[tuple[str, int, int], tuple[Reads, float]] = {}
    with metered_runtime(sink, meter.register) as runtime:
        api = f"{runtime.api_url}/api/v1"
        sizes = (args.small, args.large)
        organizations = {}
        for size in sizes:
            started = time.perf_counter()
            organization = runtime.create_organization(f"Lists {size}")
            seed(api, organization.id, organization.api_key, size)
            runtime.wait_idle(timeout=60)
            organizations[size] = organization
            print(f"seeded {size} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        for size, organization in organizations.items():
            for name in LISTS:
                for page in PAGES:
                    path = f"/{name}?page={page}&per_page={PER_PAGE}"
                    results[(name, page, size)] = measure(
                        api, organization.api_key, meter, path, args.repeat
                    )
    small, large = args.small, args.large
    out = sys.stdout
    out.write(
        f"List pages ({PER_PAGE} per page): Billow's DynamoDB requests, read units and median"
        f" latency through the local API, at {small} and {large} items\n\n"
    )
    out.write(
        f"{'request':<24}{'reqs':>6}{'RU':>8}{'ms':>8}   {'reqs':>6}{'RU':>8}{'ms':>8}"
        f"   {'RU ratio':>9}{'ms ratio':>9}\n"
    )
    out.write(f"{'':<24}{f'at {small}':>22}   {f'at {large}':>22}\n")
    for name in LISTS:
        for page in PAGES:
            (few, few_s), (many, many_s) = (
                results[(name, page, small)],
                results[(name, page, large)],
            )
            out.write(
                f"{f'GET /{name} page {page}':<24}"
                f"{few.requests:>6}{few.read_units:>8.1f}{few_s * 1000:>8.1f}   "
                f"{many.requests:>6}{many.read_units:>8.1f}{many_s * 1000:>8.1f}   "
                f"{many.read_units / few.read_units:>9.2f}{many_s / few_s:>9.2f}\n"
            )


if __name__ == "__main__":
    main()
