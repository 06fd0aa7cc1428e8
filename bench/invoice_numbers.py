"""Invoice numbers on a billing day: conflicts per invoice at the deployed concurrency.

One organization, N monthly subscriptions billed in arrears (no payment provider, so no
charge follows), all due at the same month boundary (one made by the services, the rest
copies of its items with new ids). The run is the invoice worker's
work at the concurrency its queue is deployed with (``invoice-work``'s maximum
concurrency in the topology, 20): that many threads each take the next due subscription
and bill it through the same service the worker's handler calls. Every other function
(the outbox publisher and what it feeds) runs in the local runtime as usual.

A conflict is a conditional write that failed because another writer got there first
(``ConcurrentUpdate``): the use case reads again and decides again. The bench prints them
per invoice, checks through ``GET /api/v1/invoices`` that every subscription got exactly
one invoice and that the numbers are 1..N without a gap or a repeat, and prints the run's
wall time.

DynamoDB answers in a few milliseconds; moto answers in less, which would make a
read-decide-write window unrealistically short. ``--dynamodb-ms`` adds that much to
every DynamoDB call made by Billow's code (5 ms by default).

Usage: python bench/invoice_numbers.py [--subscriptions 5000] [--concurrency 20]
       [--dynamodb-ms 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "billow" / "python", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import boto3  # noqa: E402

from bench.support import metered_runtime  # noqa: E402
from billow.adapters.table import TableBase  # noqa: E402
from billow.composition import dependencies  # noqa: E402
from billow.domain.errors import ConcurrentUpdate  # noqa: E402
from billow.services.billing_run import DueSubscription  # noqa: E402
from billow.services.customers import CustomerInput, upsert_customer  # noqa: E402
from billow.services.invoice_work import work  # noqa: E402
from billow.services.subscriptions import CreateSubscription  # noqa: E402
from billow.services.subscriptions import create as create_subscription  # noqa: E402
from billow.topology import TOPOLOGY  # noqa: E402
from tests.support import bearer, http_json  # noqa: E402

PLAN_CODE = "numbers-monthly"
STARTED = datetime(2026, 11, 1, tzinfo=UTC)
BILLED = datetime(2026, 12, 1, 1, tzinfo=UTC)


class Conflicts:
    """Counts the conditional writes that lost a race, across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.kinds: dict[str, int] = {}

    def install(self) -> Callable[[], None]:
        original = TableBase.commit
        conflicts = self

        def counted(store: TableBase, transaction: Any) -> None:
            try:
                original(store, transaction)
            except ConcurrentUpdate:
                with conflicts._lock:
                    conflicts.count += 1
                    first = next(iter(transaction.actions[0].values()))
                    key = first.get("Item") or first.get("Key")
                    kind = str(key["SK"]).split("#")[0]
                    conflicts.kinds[kind] = conflicts.kinds.get(kind, 0) + 1
                raise

        TableBase.commit = counted  # type: ignore[method-assign,assignment]
        return lambda: setattr(TableBase, "commit", original)


class SlowDynamoDB:
    """Once ``on``, every DynamoDB call on the session takes ``delay_ms`` longer, as on the
    network (setup runs at moto's speed)."""

    def __init__(self, delay_ms: float) -> None:
        self.delay_s = delay_ms / 1000
        self.on = False

    def register(self, events: Any) -> None:
        events.register("after-call.dynamodb", self._wait)

    def _wait(self, **_: Any) -> None:
        if self.on:
            time.sleep(self.delay_s)


def subscribe(organization_id: str, index: int) -> tuple[str, str]:
    external_id = f"numbers-{index:06d}"
    upsert_customer(
        dependencies(),
        organization_id,
        CustomerInput.model_validate({"external_id": external_id, "currency": "EUR"}),
    )
    created = create_subscription(
        dependencies(),
        organization_id,
        CreateSubscription.model_validate(
            {
                "subscription": {
                    "external_customer_id": external_id,
                    "plan_code": PLAN_CODE,
                    "external_id": f"{external_id}-sub",
                    "subscription_at": STARTED.isoformat(),
                }
            }
        ),
        STARTED,
    )
    return created.view.subscription.external_id, created.view.subscription.lago_id


def seed(organization_id: str, count: int) -> list[tuple[str, str]]:
    """One customer and subscription made by the services, and ``count - 1`` copies of
    them (new ids) written with BatchWriteItem: what billing reads of each is the same,
    and making thousands one by one would take most of the run."""
    store = dependencies().store
    external_id, lago_id = subscribe(organization_id, 0)
    subscription = store.subscriptions.get(organization_id, external_id, lago_id)
    customer = store.customers.get(organization_id, "numbers-000000")
    assert subscription is not None and customer is not None
    made = [(external_id, lago_id)]
    table = boto3.resource("dynamodb").Table(store.table_name)
    with table.batch_writer() as writer:
        for index in range(1, count):
            copy = customer.model_copy(
                update={
                    "external_id": f"numbers-{index:06d}",
                    "lago_id": f"{organization_id[:8]}-customer-{index:08d}",
                    "sequential_id": index + 1,
                    "slug": f"{customer.slug}-{index}",
                }
            )
            sub = subscription.model_copy(
                update={
                    "external_id": f"numbers-{index:06d}-sub",
                    "lago_id": f"{organization_id[:8]}-subscription-{index:08d}",
                    "external_customer_id": copy.external_id,
                    "lago_customer_id": copy.lago_id,
                }
            )
            writer.put_item(Item=store.customers.item(copy))
            writer.put_item(Item=store.subscriptions.item(sub))
            made.append((sub.external_id, sub.lago_id))
    return made


def invoice_numbers(api: str, api_key: str) -> list[int]:
    """Every invoice's sequential id, read page by page as a Lago client would."""
    numbers: list[int] = []
    page: int | None = 1
    while page is not None:
        status, body = http_json(
            "GET", f"{api}/invoices?per_page=100&page={page}", None, bearer(api_key)
        )
        assert status == 200, body
        numbers += [invoice["sequential_id"] for invoice in body["invoices"]]
        page = body["meta"]["next_page"]
    return numbers


def create_plan(api: str, api_key: str) -> None:
    status, body = http_json(
        "POST",
        f"{api}/plans",
        {
            "plan": {
                "code": PLAN_CODE,
                "name": "Monthly",
                "interval": "monthly",
                "amount_cents": 1900,
                "amount_currency": "EUR",
                "pay_in_advance": False,
            }
        },
        bearer(api_key),
    )
    assert status == 200, body


def bill_all(
    organization_id: str, subscriptions: list[tuple[str, str]], concurrency: int
) -> tuple[list[list[str]], int]:
    """What the invoice worker does for each, ``concurrency`` at a time. A worker that lost
    every one of its races gives the message back (SQS shows it again after the visibility
    timeout); here it is taken again at once. Returns the outcomes and how many gave up."""
    gave_up: list[str] = []

    def bill(subscription: tuple[str, str]) -> list[str]:
        due = DueSubscription(
            organization_id=organization_id,
            external_id=subscription[0],
            lago_id=subscription[1],
            now=BILLED.isoformat(),
        )
        while True:
            try:
                return work(dependencies(), due)
            except ConcurrentUpdate:
                gave_up.append(subscription[1])

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(bill, subscriptions)), len(gave_up)


def report(args: argparse.Namespace, result: Result) -> None:
    numbers = result.numbers
    invoices = len(numbers)
    gap_free = sorted(numbers) == list(range(1, invoices + 1))
    out = sys.stdout
    out.write(
        f"Invoice numbers: {args.subscriptions:,} subscriptions of one organization billed by"
        f" {args.concurrency} concurrent workers (DynamoDB +{args.dynamodb_ms:g} ms per call)\n\n"
    )
    out.write(f"  subscriptions billed            {result.billed:>10,}\n")
    out.write(f"  invoices listed                 {invoices:>10,}\n")
    out.write(f"  numbers 1..N, no gap, no repeat {'yes' if gap_free else 'NO':>10}\n")
    out.write(f"  conflicts                       {result.conflicts:>10,}\n")
    for kind, count in sorted(result.kinds.items()):
        out.write(f"    on {kind:<28}{count:>10,}\n")
    out.write(f"  conflicts per invoice           {result.conflicts / max(invoices, 1):>10.3f}\n")
    out.write(f"  workers that lost every race    {result.gave_up:>10,}\n")
    out.write(f"  billing wall time               {result.billed_s:>9.1f} s\n")
    out.write(f"  until every invoice is listed   {result.settled_s:>9.1f} s\n")
    if invoices != args.subscriptions or not gap_free:
        sys.exit(1)


@dataclasses.dataclass
class Result:
    billed: int
    numbers: list[int]
    conflicts: int
    kinds: dict[str, int]
    gave_up: int
    billed_s: float
    settled_s: float


def run(args: argparse.Namespace) -> Result:
    sink = io.StringIO()
    conflicts = Conflicts()
    slow = SlowDynamoDB(args.dynamodb_ms)
    with metered_runtime(sink, slow.register) as runtime:
        api = f"{runtime.api_url}/api/v1"
        organization = runtime.create_organization("Invoice numbers")
        create_plan(api, organization.api_key)
        started = time.perf_counter()
        subscriptions = seed(organization.id, args.subscriptions)
        runtime.wait_idle(timeout=600)
        print(
            f"setup: {len(subscriptions):,} subscriptions in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        slow.on = True
        restore = conflicts.install()
        started = time.perf_counter()
        try:
            outcomes, gave_up = bill_all(organization.id, subscriptions, args.concurrency)
            billed_s = time.perf_counter() - started
            runtime.wait_idle(timeout=600)
            settled_s = time.perf_counter() - started
        finally:
            restore()
            slow.on = False
        numbers = invoice_numbers(api, organization.api_key)
    return Result(
        billed=sum(1 for outcome in outcomes if outcome),
        numbers=numbers,
        conflicts=conflicts.count,
        kinds=conflicts.kinds,
        gave_up=gave_up,
        billed_s=billed_s,
        settled_s=settled_s,
    )


def main() -> None:
    deployed = next(q for q in TOPOLOGY.queues if q.name == "invoice-work").max_concurrency
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=deployed)
    parser.add_argument("--dynamodb-ms", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # more threads than pooled sockets
    report(args, run(args))


if __name__ == "__main__":
    main()
