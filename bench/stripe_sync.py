"""What mirroring the catalog and subscriptions in Stripe costs in Stripe calls, and how
long a large organization takes to sync at Stripe's rate limits.

Through the real parts: a local Billow, an organization whose Stripe connection has
``sync_catalog`` and ``sync_subscriptions`` on, plans made and repriced through the API,
customers with a card in Stripe and subscriptions made through the API. Stripe calls are
the emulator's per-account request counts (``/_config/requests``), by endpoint.

From the counted calls per subscription it computes how long 10,000 subscriptions take
to sync with the stripe-sync queue's deployed concurrency (read from the topology) and
a Stripe answer time (``--stripe-ms``), against Stripe's documented live-mode limits:
100 requests a second per account and 25 a second on one endpoint. When the rate the
consumers can reach stays under both, Stripe answers no 429 at all; otherwise the time
is the limit's.

Usage: python bench/stripe_sync.py [--plans 20] [--subscriptions 50] [--stripe-ms 500]
"""

from __future__ import annotations

import argparse
import io
import logging
import secrets
import string
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "billow" / "python", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import stripe  # noqa: E402

from bench.support import metered_runtime  # noqa: E402
from billow.topology import TOPOLOGY  # noqa: E402
from tests.support import bearer, http_json, wait_for  # noqa: E402

ACCOUNT_LIMIT = 100
"""Stripe's live-mode requests per second per account."""
ENDPOINT_LIMIT = 25
"""Stripe's live-mode requests per second on one endpoint (the busiest here)."""
TARGET = 10_000


class Bench:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        organization = runtime.create_organization("Stripe sync bench")
        self.headers = bearer(organization.api_key)
        self.api = f"{runtime.api_url}/api/v1"
        alphabet = string.ascii_letters + string.digits
        self.key = "sk_test_" + "".join(secrets.choice(alphabet) for _ in range(24))
        self.call(
            "POST",
            "/integrations/stripe",
            {
                "integration": {
                    "secret_key": self.key,
                    "sync_catalog": True,
                    "sync_subscriptions": True,
                }
            },
        )
        url = runtime.stripe_url
        self.stripe = stripe.StripeClient(
            self.key, base_addresses={"api": url, "files": url, "connect": url}
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = http_json(method, f"{self.api}{path}", body, self.headers)
        assert status == 200, (path, status, answer)
        return answer

    def stripe_counts(self) -> Counter[str]:
        status, answer = http_json(
            "GET", f"{self.runtime.stripe_url}/_config/requests?api_key={self.key}"
        )
        assert status == 200, answer
        return Counter(answer["by_endpoint"])

    def reset(self) -> None:
        http_json("DELETE", f"{self.runtime.stripe_url}/_config/requests?api_key={self.key}")

    def synced(self, path: str, key: str) -> None:
        def done() -> bool:
            return bool(self.call("GET", path)[key]["stripe_sync"]["status"] == "succeeded")

        wait_for(done, timeout=120)

    def measure(self, work: Any, count: int) -> Counter[str]:
        """Stripe calls per unit of ``work`` done ``count`` times (waiting for the sync)."""
        self.runtime.wait_idle(timeout=300)
        self.reset()
        work()
        self.runtime.wait_idle(timeout=300)
        return Counter({name: n / count for name, n in self.stripe_counts().items()})


def show(title: str, calls: Counter[str]) -> None:
    print(f"\n{title}: {sum(calls.values()):.2f} Stripe calls")
    for endpoint, n in sorted(calls.items()):
        print(f"  {endpoint:<40} {n:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=int, default=20)
    parser.add_argument("--subscriptions", type=int, default=50)
    parser.add_argument("--stripe-ms", type=float, default=500.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sink = io.StringIO()
    with metered_runtime(sink, lambda events: None) as runtime:
        bench = Bench(runtime)
        codes = [f"plan-{n}" for n in range(args.plans)]

        def create_plans() -> None:
            for code in codes:
                plan = {
                    "name": code,
                    "code": code,
                    "interval": "monthly",
                    "amount_cents": 1000,
                    "amount_currency": "USD",
                }
                bench.call("POST", "/plans", {"plan": plan})
            for code in codes:
                bench.synced(f"/plans/{code}", "plan")

        def reprice() -> None:
            for code in codes:
                bench.call("PUT", f"/plans/{code}", {"plan": {"amount_cents": 1500}})
            for code in codes:
                bench.synced(f"/plans/{code}", "plan")

        per_plan = bench.measure(create_plans, len(codes))
        per_price = bench.measure(reprice, len(codes))

        # Stripe customers first, and their events settled, then Billow's customers linked
        # to them: the bench measures syncing, not a customer edited on both sides at once.
        stripe_ids = []
        for n in range(args.subscriptions):
            customer = bench.stripe.v1.customers.create({"name": f"customer {n}"})
            card = bench.stripe.v1.payment_methods.create(
                {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2035,
                        "cvc": "123",
                    },
                }
            )
            bench.stripe.v1.payment_methods.attach(card.id, {"customer": customer.id})
            bench.stripe.v1.customers.update(
                customer.id, {"invoice_settings": {"default_payment_method": card.id}}
            )
            stripe_ids.append(customer.id)
        runtime.wait_idle(timeout=300)
        customers = []
        for n, stripe_id in enumerate(stripe_ids):
            external_id = f"customer-{n}"
            bench.call(
                "POST",
                "/customers",
                {
                    "customer": {
                        "external_id": external_id,
                        "billing_configuration": {
                            "payment_provider": "stripe",
                            "provider_customer_id": stripe_id,
                            "sync_with_provider": False,
                        },
                    }
                },
            )
            customers.append(external_id)

        def subscribe() -> None:
            for n, external_id in enumerate(customers):
                body = {
                    "subscription": {
                        "external_customer_id": external_id,
                        "plan_code": codes[n % len(codes)],
                        "external_id": f"sub-{n}",
                    }
                }
                bench.call("POST", "/subscriptions", body)
            for n in range(len(customers)):
                bench.synced(f"/subscriptions/sub-{n}", "subscription")

        per_subscription = bench.measure(subscribe, len(customers))

    show(f"Per plan created ({args.plans} plans)", per_plan)
    show(f"Per price change ({args.plans} plans)", per_price)
    show(f"Per subscription synced ({args.subscriptions})", per_subscription)

    queue = TOPOLOGY.queue("stripe-sync")
    concurrency = queue.max_concurrency or 1
    seconds_per_call = args.stripe_ms / 1000
    calls = sum(per_subscription.values())
    busiest = max(per_subscription.values())
    reachable = concurrency / seconds_per_call  # requests a second the consumers can make
    allowed = min(ACCOUNT_LIMIT, ENDPOINT_LIMIT * calls / busiest)
    rate = min(reachable, allowed)
    print(
        f"\n{TARGET:,} subscriptions: {calls * TARGET:,.0f} Stripe calls "
        f"({busiest:.2f} per subscription on the busiest endpoint)."
    )
    print(
        f"  stripe-sync consumers: {concurrency} at a time x 1 call per {args.stripe_ms:.0f} ms "
        f"= at most {reachable:.0f} requests/s; Stripe allows {allowed:.0f}/s for this mix."
    )
    print(
        f"  time: {calls * TARGET / rate / 60:.1f} min; 429s surfaced: "
        f"{0 if reachable <= allowed else 'some (the consumers outrun the limit)'}"
    )


if __name__ == "__main__":
    main()
