"""Drives Billow's usage billing with Lago's official Python client; run by
test_lago_client.py in ``.venv/lago-client``.

Billable metrics, a plan with charges (one with a filter), a customer and subscription,
events one by one and in a batch (with a retried transaction id), an event read back,
and the current usage. Prints what it saw as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any

from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BillableMetric, Charge, Customer, Plan, Subscription
from lago_python_client.models.billable_metric import BillableMetricFilter, BillableMetricFilters
from lago_python_client.models.charge import ChargeFilter, ChargeFilters, Charges
from lago_python_client.models.event import BatchEvent, Event


def usage_settled(client: Client, expected_events: int) -> Any:
    """Events are folded asynchronously: poll until every one is counted (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        usage = client.customers.current_usage("usage-customer", "usage-sub")
        counted = sum(charge.events_count for charge in usage.charges_usage)
        if counted >= expected_events or time.monotonic() > deadline:
            return usage
        time.sleep(0.1)


def main(api_url: str, api_key: str) -> dict[str, Any]:
    client = Client(api_key=api_key, api_url=api_url, max_retries=0)
    calls = client.billable_metrics.create(
        BillableMetric(
            name="API calls",
            code="api_calls",
            aggregation_type="count_agg",
            filters=BillableMetricFilters(
                __root__=[BillableMetricFilter(key="region", values=["eu", "us"])]
            ),
        )
    )
    storage = client.billable_metrics.create(
        BillableMetric(name="Storage", code="storage", aggregation_type="sum_agg", field_name="gb")
    )
    client.plans.create(
        Plan(
            name="Usage",
            code="usage",
            interval="monthly",
            amount_cents=1000,
            amount_currency="EUR",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=calls.lago_id,
                        charge_model="standard",
                        properties={"amount": "0.02"},
                        filters=ChargeFilters(
                            __root__=[
                                ChargeFilter(
                                    invoice_display_name="EU calls",
                                    properties={"amount": "0.05"},
                                    values={"region": ["eu"]},
                                )
                            ]
                        ),
                    ),
                    Charge(
                        billable_metric_id=storage.lago_id,
                        charge_model="package",
                        properties={"amount": "3", "package_size": 10, "free_units": 5},
                    ),
                ]
            ),
        )
    )
    client.customers.create(Customer(external_id="usage-customer", name="Usage customer"))
    subscription = client.subscriptions.create(
        Subscription(
            external_customer_id="usage-customer",
            plan_code="usage",
            external_id="usage-sub",
            billing_time="anniversary",
        )
    )
    assert subscription is not None and subscription.started_at
    # Usage counts from the subscription's start: a second after it.
    started_at = int(datetime.fromisoformat(subscription.started_at).timestamp()) + 1

    def event(transaction_id: str, code: str, **properties: Any) -> Event:
        return Event(
            transaction_id=transaction_id,
            external_subscription_id="usage-sub",
            code=code,
            timestamp=started_at,
            properties=properties,
        )

    created = client.events.create(event("one", "api_calls", region="eu"))
    client.events.batch_create(
        BatchEvent(
            events=[
                *(
                    event(f"batch-{n}", "api_calls", region="us" if n % 2 else "eu")
                    for n in range(4)
                ),
                event("gb-1", "storage", gb=21),
                # The first event again, as a client retrying it would send it.
                event("one", "api_calls", region="eu"),
            ]
        )
    )
    try:
        client.events.create(event("one", "api_calls", region="us"))
        reused = "accepted"
    except LagoApiError as error:
        reused = f"{error.status_code}"
    found = client.events.find("one")
    usage = usage_settled(client, 6)
    return {
        "event": created.transaction_id if created else None,
        "found": [found.transaction_id, found.lago_subscription_id is not None],
        "reused": reused,
        "usage": {
            "amount_cents": usage.amount_cents,
            "charges": {
                charge.billable_metric.code: [
                    charge.units,
                    charge.events_count,
                    charge.amount_cents,
                ]
                for charge in usage.charges_usage
            },
            "filters": sorted(
                [f.invoice_display_name, f.units, f.amount_cents]
                for charge in usage.charges_usage
                for f in charge.filters
            ),
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
