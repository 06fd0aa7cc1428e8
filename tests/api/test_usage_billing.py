"""Usage-based billing end to end: billable metrics, plans with charges, events (single and
batch, retried, duplicated, late and out of order), current usage, the invoice at the
period's end, and the event.error webhook.

Amounts are computed by hand next to each assertion (Lago's formulas, in the currency's
major units, rounded half up to cents).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from billow.domain.periods import billing_period
from tests.api.billing_helpers import (
    invoices_of,
    payment_intents,
    stripe_customer,
    wait_payment_status,
    webhooks,
)
from tests.api.conftest import StripeOrg

HOUR = timedelta(hours=1)


def metric(org: Any, code: str, aggregation: str, **fields: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/billable_metrics",
        json={
            "billable_metric": {
                "name": code.replace("_", " ").title(),
                "code": code,
                "aggregation_type": aggregation,
                **fields,
            }
        },
    )
    assert status == 200, body
    return body["billable_metric"]  # type: ignore[no-any-return]


def tiers(*ranges: tuple[int, int | None, str, str]) -> list[dict[str, Any]]:
    """Graduated or volume ranges: (from, to, flat amount, per unit amount) each."""
    return [
        {"from_value": low, "to_value": high, "flat_amount": flat, "per_unit_amount": unit}
        for low, high, flat, unit in ranges
    ]


def charge(billable_metric: dict[str, Any], model: str, **fields: Any) -> dict[str, Any]:
    return {"billable_metric_id": billable_metric["lago_id"], "charge_model": model, **fields}


def subscribe(org: Any, plan: dict[str, Any], external_id: str) -> dict[str, Any]:
    """A customer and an anniversary subscription: its first period starts now, whatever
    the day the suite runs."""
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": f"{external_id}-customer"}}
    )
    assert status == 200, body
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": f"{external_id}-customer",
                "plan_code": plan["code"],
                "external_id": external_id,
                "billing_time": "anniversary",
            }
        },
    )
    assert status == 200, body
    return body["subscription"]  # type: ignore[no-any-return]


def usage_plan(org: Any, code: str, charges: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/plans",
        json={
            "plan": {
                "name": code.title(),
                "code": code,
                "interval": "monthly",
                "amount_cents": fields.pop("amount_cents", 1000),
                "amount_currency": "EUR",
                "charges": charges,
                **fields,
            }
        },
    )
    assert status == 200, body
    return body["plan"]  # type: ignore[no-any-return]


def plan_with(org: Any, code: str, one_charge: dict[str, Any]) -> tuple[int, Any]:
    """Try to make a free plan with one charge."""
    return org.api.post(  # type: ignore[no-any-return]
        "/plans",
        json={
            "plan": {
                "name": "Bad",
                "code": code,
                "interval": "monthly",
                "amount_cents": 0,
                "amount_currency": "EUR",
                "charges": [one_charge],
            }
        },
    )


def period_of(subscription: dict[str, Any]) -> tuple[datetime, datetime]:
    """When the subscription started (usage counts from there) and when its first period
    ends (the anniversary period itself starts at that day's midnight)."""
    return (
        datetime.fromisoformat(subscription["started_at"]),
        datetime.fromisoformat(subscription["current_billing_period_ending_at"]),
    )


def send(org: Any, external_id: str, code: str, at: datetime, tx: str, **properties: Any) -> None:
    status, body = org.api.post(
        "/events",
        json={
            "event": {
                "transaction_id": tx,
                "external_subscription_id": external_id,
                "code": code,
                "timestamp": int(at.timestamp()),
                "properties": properties,
            }
        },
    )
    assert status == 200, body


def current_usage(org: Any, subscription: dict[str, Any]) -> dict[str, Any]:
    customer = subscription["external_customer_id"]
    status, body = org.api.get(
        f"/customers/{customer}/current_usage?external_subscription_id={subscription['external_id']}"
    )
    assert status == 200, body
    return body["customer_usage"]  # type: ignore[no-any-return]


def by_metric(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["billable_metric"]["code"]: item for item in usage["charges_usage"]}


def charge_fees(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (f["units"], f["amount_cents"]) for f in invoice["fees"] if f["item"]["type"] == "charge"
    ]


# -- billable metrics -------------------------------------------------------------------


def test_billable_metrics_follow_lagos_rules(org: Any) -> None:
    status, body = org.api.post(
        "/billable_metrics",
        json={"billable_metric": {"name": "Storage", "code": "gb", "aggregation_type": "sum_agg"}},
    )
    assert status == 422 and body["error_details"] == {"field_name": ["value_is_mandatory"]}
    status, body = org.api.post(
        "/billable_metrics",
        json={
            "billable_metric": {
                "name": "Calls",
                "code": "calls",
                "aggregation_type": "count_agg",
                "recurring": True,
            }
        },
    )
    assert status == 422
    assert body["error_details"] == {"recurring": ["not_compatible_with_aggregation_type"]}
    status, body = org.api.post(
        "/billable_metrics",
        json={"billable_metric": {"name": "X", "code": "x", "aggregation_type": "median_agg"}},
    )
    assert status == 422

    storage = metric(
        org,
        "storage",
        "sum_agg",
        field_name="gb",
        recurring=True,
        rounding_function="ceil",
        rounding_precision=1,
        filters=[{"key": "region", "values": ["eu", "us"]}],
    )
    assert storage["recurring"] is True and storage["field_name"] == "gb"
    assert storage["filters"] == [{"key": "region", "values": ["eu", "us"]}]
    assert org.api.get("/billable_metrics/storage")[1]["billable_metric"] == storage
    status, body = org.api.post(
        "/billable_metrics",
        json={
            "billable_metric": {"name": "Dup", "code": "storage", "aggregation_type": "count_agg"}
        },
    )
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}
    metric(org, "calls", "count_agg")
    pages = [org.api.get(f"/billable_metrics?per_page=1&page={n}")[1] for n in (1, 2)]
    assert sorted(m["code"] for page in pages for m in page["billable_metrics"]) == [
        "calls",
        "storage",
    ]
    assert pages[0]["meta"]["total_count"] == 2 and pages[0]["meta"]["total_pages"] == 2

    # Priced by a plan, a metric keeps what its aggregates were built on.
    usage_plan(org, "storage-plan", [charge(storage, "standard", properties={"amount": "1"})])
    status, body = org.api.put(
        "/billable_metrics/storage",
        json={"billable_metric": {"name": "Disk", "aggregation_type": "max_agg", "code": "disk"}},
    )
    assert status == 200, body
    assert body["billable_metric"]["name"] == "Disk"
    assert body["billable_metric"]["aggregation_type"] == "sum_agg"
    assert body["billable_metric"]["code"] == "storage"
    status, body = org.api.delete("/billable_metrics/storage")
    assert status == 422 and body["error_details"] == {"billable_metric": ["attached_to_plans"]}
    assert org.api.delete("/plans/storage-plan")[0] == 200
    assert org.api.delete("/billable_metrics/storage")[0] == 200
    assert org.api.get("/billable_metrics/storage")[0] == 404
    assert org.api.get("/billable_metrics")[1]["meta"]["total_count"] == 1


def test_plans_carry_charges_and_refuse_bad_ones(org: Any) -> None:
    calls = metric(org, "calls", "count_agg", filters=[{"key": "region", "values": ["eu"]}])
    plan = usage_plan(
        org,
        "api",
        [
            charge(
                calls,
                "graduated",
                properties={"graduated_ranges": tiers((0, 10, "1", "0.5"), (10, None, "0", "0.4"))},
                filters=[
                    {
                        "values": {"region": ["eu"]},
                        "properties": {"graduated_ranges": tiers((0, None, "0", "1"))},
                    }
                ],
            )
        ],
    )
    (saved,) = plan["charges"]
    assert saved["billable_metric_code"] == "calls"
    assert saved["charge_model"] == "graduated"
    assert saved["filters"][0]["values"] == {"region": ["eu"]}
    assert org.api.get("/plans/api")[1]["plan"]["charges"] == plan["charges"]

    refusals = [
        (charge(calls, "standard", properties={"amount": "-1"}), 422),
        (charge(calls, "package", properties={"amount": "1", "package_size": 0}), 422),
        (
            charge(
                calls,
                "standard",
                properties={"amount": "1"},
                filters=[{"values": {"region": ["mars"]}, "properties": {"amount": "2"}}],
            ),
            422,
        ),
        (
            {
                "billable_metric_id": "00000000-0000-0000-0000-000000000000",
                "charge_model": "standard",
                "properties": {"amount": "1"},
            },
            404,
        ),
    ]
    for index, (bad, expected) in enumerate(refusals):
        status, body = plan_with(org, f"bad-{index}", bad)
        assert status == expected, (index, body)
        assert org.api.get(f"/plans/bad-{index}")[0] == 404


# -- events -----------------------------------------------------------------------------


def test_events_are_stored_once_and_batches_all_or_nothing(org: Any) -> None:
    event = {
        "transaction_id": "tx-1",
        "external_subscription_id": "sub-1",
        "code": "calls",
        "timestamp": 1_733_011_200,
        "properties": {"region": "eu"},
    }
    status, body = org.api.post("/events", json={"event": event})
    assert status == 200, body
    stored = body["event"]
    assert stored["timestamp"] == "2024-12-01T00:00:00.000Z"
    assert stored["lago_customer_id"] is None
    # A retry is answered as stored; another event reusing the id is refused.
    again = org.api.post("/events", json={"event": event})
    assert again == (200, {"event": stored})
    status, body = org.api.post(
        "/events", json={"event": {**event, "properties": {"region": "us"}}}
    )
    assert status == 422 and body["error_details"] == {"transaction_id": ["value_already_exist"]}
    status, body = org.api.get("/events/tx-1")
    assert status == 200 and body["event"]["lago_id"] == stored["lago_id"]
    assert org.api.get("/events/nope")[0] == 404

    status, body = org.api.post(
        "/events", json={"event": {**event, "transaction_id": "tx-2", "timestamp": "soon"}}
    )
    assert status == 422 and body["error_details"] == {"timestamp": ["invalid_format"]}

    batch = [
        {**event, "transaction_id": "b-1", "timestamp": "2024-12-02T10:00:00Z"},
        {**event, "transaction_id": "b-2", "timestamp": "yesterday"},
        {**event, "transaction_id": "tx-1", "properties": {"region": "us"}},
    ]
    status, body = org.api.post("/events/batch", json={"events": batch})
    assert status == 422, body
    assert body["error_details"] == {"1": {"timestamp": ["invalid_format"]}}
    assert org.api.get("/events/b-1")[0] == 404  # nothing of a refused batch is kept
    status, body = org.api.post("/events/batch", json={"events": [batch[0], batch[2]]})
    assert status == 422
    assert body["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert org.api.get("/events/b-1")[0] == 404
    status, body = org.api.post("/events/batch", json={"events": [batch[0], event]})
    assert status == 200, body
    assert [e["transaction_id"] for e in body["events"]] == ["b-1", "tx-1"]
    assert body["events"][1] == stored
    too_many = [{**event, "transaction_id": f"m-{i}"} for i in range(101)]
    status, body = org.api.post("/events/batch", json={"events": too_many})
    assert status == 422 and body["error_details"] == {"events": ["too_many_events"]}


def test_events_that_match_nothing_are_reported_with_event_error(
    local_billow: Any, org: Any, subscribed: Any
) -> None:
    calls = metric(org, "calls", "count_agg")
    plan = usage_plan(org, "api", [charge(calls, "standard", properties={"amount": "1"})])
    subscription = subscribe(org, plan, "sub-1")
    start, _ = period_of(subscription)
    send(org, "ghost", "calls", start + HOUR, "e-1")
    send(org, "sub-1", "unknown_metric", start + HOUR, "e-2")
    send(org, "sub-1", "calls", start + HOUR, "e-3")
    local_billow.wait_idle()
    errors = {
        w["event_error"]["event"]["transaction_id"]: w for w in webhooks(subscribed, "event.error")
    }
    assert set(errors) == {"e-1", "e-2"}
    assert errors["e-1"]["event_error"]["message"] == "subscription_not_found"
    assert errors["e-2"]["event_error"]["message"] == "billable_metric_not_found"
    assert errors["e-1"]["object_type"] == "event_error"
    assert by_metric(current_usage(org, subscription))["calls"]["events_count"] == 1


# -- aggregation and charge models ------------------------------------------------------


def test_every_aggregation_and_charge_model_is_billed_at_the_period_end(
    local_billow: Any, org: Any
) -> None:
    calls = metric(org, "calls", "count_agg")
    storage = metric(org, "storage", "sum_agg", field_name="gb")
    seats = metric(org, "seats", "unique_count_agg", field_name="user")
    peak = metric(org, "peak", "max_agg", field_name="cpus")
    tier = metric(org, "tier", "latest_agg", field_name="level")
    volume = metric(org, "volume", "sum_agg", field_name="total")
    disk = metric(
        org,
        "disk",
        "weighted_sum_agg",
        field_name="gb",
        rounding_function="round",
        rounding_precision=2,
    )
    plan = usage_plan(
        org,
        "usage",
        [
            charge(calls, "standard", properties={"amount": "0.05"}),
            charge(
                storage,
                "graduated",
                properties={"graduated_ranges": tiers((0, 10, "1", "0.5"), (10, None, "0", "0.4"))},
            ),
            charge(
                seats,
                "volume",
                properties={"volume_ranges": tiers((0, 2, "0", "3"), (3, None, "5", "2"))},
            ),
            charge(peak, "package", properties={"amount": "4", "package_size": 4, "free_units": 1}),
            charge(tier, "standard", properties={"amount": "1.5"}),
            charge(
                volume,
                "percentage",
                properties={"rate": "2", "fixed_amount": "0.1", "free_units_per_events": 1},
            ),
            charge(disk, "standard", properties={"amount": "1"}),
        ],
    )
    subscription = subscribe(org, plan, "usage-1")
    start, end = period_of(subscription)
    day = timedelta(days=1)
    for n in range(7):
        send(org, "usage-1", "calls", start + HOUR * (n + 1), f"c-{n}")
    send(org, "usage-1", "calls", start + HOUR, "c-0")  # a retry: counted once
    for n, gb in enumerate(["4", "6.5", "3"]):
        send(org, "usage-1", "storage", start + day, f"s-{n}", gb=gb)
    for n, (user, operation) in enumerate(
        [("u1", "add"), ("u2", "add"), ("u1", "add"), ("u3", "add"), ("u2", "remove")]
    ):
        send(
            org,
            "usage-1",
            "seats",
            start + HOUR * (n + 1),
            f"u-{n}",
            user=user,
            operation_type=operation,
        )
    for n, cpus in enumerate([3, 9, 5]):
        send(org, "usage-1", "peak", start + day, f"p-{n}", cpus=cpus)
    # Out of order: the latest by timestamp wins, not the last to arrive.
    send(org, "usage-1", "tier", start + 1 * day, "t-1", level=5)
    send(org, "usage-1", "tier", start + 3 * day, "t-3", level=2)
    send(org, "usage-1", "tier", start + 2 * day, "t-2", level=7)
    send(org, "usage-1", "volume", start + 2 * day, "v-2", total=50)
    send(org, "usage-1", "volume", start + 1 * day, "v-1", total=100)
    period_start = datetime.fromisoformat(subscription["current_billing_period_started_at"])
    half = period_start + (end - period_start) / 2
    send(org, "usage-1", "disk", half, "d-1", gb=10)
    local_billow.wait_idle()

    usage = by_metric(current_usage(org, subscription))
    seconds = Decimal(int((end - period_start).total_seconds()))
    disk_units = (Decimal(10) * Decimal(int((end - half).total_seconds())) / seconds).quantize(
        Decimal("0.01")
    )
    expected = {
        # units, events, cents
        "calls": ("7", 7, 35),  # 7 × 0.05
        "storage": ("13.5", 3, 740),  # 10 × 0.5 + 1 + 3.5 × 0.4
        "seats": ("2", 5, 600),  # u1 and u3: 2 × 3
        "peak": ("9", 3, 800),  # ceil((9 − 1) / 4) × 4
        "tier": ("2", 3, 300),  # 2 × 1.5
        "volume": ("150", 2, 110),  # (150 − 100 free) × 2 % + 1 × 0.1
        "disk": (str(disk_units), 1, int(disk_units * 100)),  # 10 GB for half the period
    }
    assert {
        code: (item["units"], item["events_count"], item["amount_cents"])
        for code, item in usage.items()
    } == expected
    total = sum(cents for _, _, cents in expected.values())
    assert current_usage(org, subscription)["amount_cents"] == total

    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    (invoice,) = invoices_of(org, "usage-1-customer")
    charges = {
        fee["item"]["code"]: fee for fee in invoice["fees"] if fee["item"]["type"] == "charge"
    }
    assert {
        code: (fee["units"], fee["events_count"], fee["amount_cents"])
        for code, fee in charges.items()
    } == expected
    assert charges["calls"]["item"]["item_type"] == "BillableMetric"
    assert charges["calls"]["lago_charge_id"] == plan["charges"][0]["lago_id"]
    assert charges["storage"]["amount_details"]["graduated_ranges"]
    subscription_fee = [fee for fee in invoice["fees"] if fee["item"]["type"] == "subscription"]
    assert [fee["amount_cents"] for fee in subscription_fee] == [1000]
    assert invoice["fees_amount_cents"] == 1000 + total
    assert invoice["total_amount_cents"] == 1000 + total  # no taxes in this organization


def test_filters_price_their_events_and_the_rest_falls_to_the_charge(
    local_billow: Any, org: Any
) -> None:
    calls = metric(org, "calls", "count_agg", filters=[{"key": "region", "values": ["eu", "us"]}])
    plan = usage_plan(
        org,
        "regional",
        [
            charge(
                calls,
                "standard",
                properties={"amount": "0.05"},
                filters=[
                    {
                        "invoice_display_name": "Europe",
                        "values": {"region": ["eu"]},
                        "properties": {"amount": "0.1"},
                    }
                ],
            )
        ],
    )
    subscription = subscribe(org, plan, "regional-1")
    start, end = period_of(subscription)
    for n, region in enumerate(["eu", "eu", "eu", "us", "us", None]):
        properties = {"region": region} if region else {}
        send(org, "regional-1", "calls", start + HOUR, f"r-{n}", **properties)
    local_billow.wait_idle()

    (usage,) = current_usage(org, subscription)["charges_usage"]
    assert usage["units"] == "6" and usage["amount_cents"] == 45  # 3 × 0.10 + 3 × 0.05
    filtered = {
        f["invoice_display_name"]: (f["units"], f["amount_cents"]) for f in usage["filters"]
    }
    assert filtered == {"Europe": ("3", 30), "Calls": ("3", 15)}

    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    (invoice,) = invoices_of(org, "regional-1-customer")
    fees = {
        fee["item"]["filter_invoice_display_name"]: (fee["units"], fee["amount_cents"])
        for fee in invoice["fees"]
        if fee["item"]["type"] == "charge"
    }
    assert fees == {"Europe": ("3", 30), None: ("3", 15)}


def test_a_recurring_metric_carries_its_total_into_the_next_period(
    local_billow: Any, org: Any
) -> None:
    seats = metric(org, "seats", "sum_agg", field_name="count", recurring=True)
    plan = usage_plan(
        org, "seats", [charge(seats, "standard", properties={"amount": "2"})], amount_cents=0
    )
    subscription = subscribe(org, plan, "seats-1")
    start, end = period_of(subscription)
    send(org, "seats-1", "seats", start + HOUR, "s-1", count=5)
    send(org, "seats-1", "seats", start + 2 * HOUR, "s-2", count=-2)
    local_billow.wait_idle()
    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    send(org, "seats-1", "seats", end + HOUR, "s-3", count=4)
    local_billow.wait_idle()
    (first,) = invoices_of(org, "seats-1-customer")
    assert charge_fees(first) == [("3", 600)]  # 5 − 2 seats, at 2 each
    next_end = billing_period(
        end, interval="monthly", billing_time="anniversary", anchor=start, timezone="UTC"
    ).end
    local_billow.fire_schedule("billing-run", next_end)
    local_billow.wait_idle()
    second = [i for i in invoices_of(org, "seats-1-customer") if i["lago_id"] != first["lago_id"]]
    assert charge_fees(second[0]) == [("7", 1400)]  # 3 carried + 4 more


def test_pay_in_advance_charges_invoice_each_event_at_once_and_charge_it_through_stripe(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    org = stripe_org
    calls = metric(org, "calls", "count_agg")
    storage = metric(org, "storage", "sum_agg", field_name="gb")
    graduated = {"graduated_ranges": tiers((0, 10, "0", "1"), (10, None, "0", "0.5"))}
    usage_plan(
        org,
        "instant",
        [
            charge(calls, "standard", properties={"amount": "2"}, pay_in_advance=True),
            charge(storage, "graduated", properties=graduated, pay_in_advance=True),
        ],
    )
    cus = stripe_customer(org, "instant-customer", wait_for=wait_for)
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "instant-customer",
                "plan_code": "instant",
                "external_id": "instant-1",
                "billing_time": "anniversary",
            }
        },
    )
    assert status == 200, body
    start, end = period_of(body["subscription"])
    send(org, "instant-1", "calls", start + HOUR, "call-1")
    send(org, "instant-1", "calls", start + HOUR, "call-1")  # a retry: one fee
    send(org, "instant-1", "storage", start + HOUR, "gb-1", gb=8)  # 8 × 1
    send(org, "instant-1", "storage", start + HOUR, "gb-2", gb=6)  # 2 × 1 + 4 × 0.5
    local_billow.wait_idle()

    invoices = invoices_of(org, "instant-customer")
    fees = sorted(
        (fee["item"]["code"], fee["units"], fee["amount_cents"], fee["pay_in_advance"])
        for invoice in invoices
        for fee in invoice["fees"]
    )
    assert fees == [
        ("calls", "1", 200, True),
        ("storage", "6", 400, True),
        ("storage", "8", 800, True),
    ]
    assert all(invoice["invoice_type"] == "subscription" for invoice in invoices)
    for invoice in invoices:
        wait_payment_status(org, invoice["lago_id"], "succeeded", wait_for)
    paid = sorted(pi["amount"] for pi in payment_intents(org, cus) if pi["status"] == "succeeded")
    assert paid == [200, 400, 800]
    assert len(webhooks(subscribed, "invoice.created")) == 3

    # The period's invoice bills the plan's fee and none of these charges again.
    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    (closing,) = [
        i
        for i in invoices_of(org, "instant-customer")
        if i["lago_id"] not in {x["lago_id"] for x in invoices}
    ]
    assert [fee["item"]["type"] for fee in closing["fees"]] == ["subscription"]


def test_pay_in_advance_charges_follow_lagos_rules(org: Any) -> None:
    peak = metric(org, "peak", "max_agg", field_name="cpus")
    calls = metric(org, "calls", "count_agg")
    volume = {"volume_ranges": tiers((0, None, "0", "1"))}
    for index, (bad, field) in enumerate(
        [
            (
                charge(peak, "standard", properties={"amount": "1"}, pay_in_advance=True),
                "billable_metric",
            ),
            (charge(calls, "volume", properties=volume, pay_in_advance=True), "charge_model"),
            (
                charge(
                    calls,
                    "standard",
                    properties={"amount": "1"},
                    pay_in_advance=True,
                    min_amount_cents=100,
                ),
                "min_amount_cents",
            ),
            (
                charge(calls, "standard", properties={"amount": "1"}, invoiceable=False),
                "invoiceable",
            ),
        ]
    ):
        status, body = plan_with(org, f"bad-{index}", bad)
        assert status == 422 and field in body["error_details"], (index, body)


def test_progressive_billing_invoices_usage_as_it_reaches_each_threshold(
    local_billow: Any, org: Any, subscribed: Any
) -> None:
    calls = metric(org, "calls", "count_agg")
    plan = usage_plan(
        org,
        "progressive",
        [charge(calls, "standard", properties={"amount": "1"})],
        usage_thresholds=[
            {"threshold_display_name": "First 5", "amount_cents": 500},
            {"threshold_display_name": "Every 10 more", "amount_cents": 1000, "recurring": True},
        ],
    )
    assert [(t["amount_cents"], t["recurring"]) for t in plan["usage_thresholds"]] == [
        (500, False),
        (1000, True),
    ]
    subscription = subscribe(org, plan, "prog-1")
    start, end = period_of(subscription)
    sent = 0

    def calls_made(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            send(org, "prog-1", "calls", start + HOUR, f"call-{sent}")
            sent += 1
        local_billow.wait_idle()

    def progressive() -> list[dict[str, Any]]:
        found = invoices_of(org, "prog-1-customer")
        return sorted(
            (i for i in found if i["invoice_type"] == "progressive_billing"),
            key=lambda i: i["sequential_id"],
        )

    calls_made(3)  # 3.00: below the first threshold
    assert progressive() == []
    calls_made(3)  # 6.00: the first threshold (5.00) is reached
    (first,) = progressive()
    assert charge_fees(first) == [("6", 600)]
    assert first["applied_usage_thresholds"][0]["usage_threshold"]["amount_cents"] == 500
    assert first["applied_usage_thresholds"][0]["lifetime_usage_amount_cents"] == 600
    calls_made(4)  # 10.00: the next level is at 15.00
    assert len(progressive()) == 1
    # 16.00: 5.00 + one recurring 10.00 is reached at 15.00, and what grew since 6.00 is
    # invoiced: the 15th call's fold may come alone or with the 16th, as the stream batches.
    calls_made(6)
    first, second = progressive()
    ((units, cents),) = charge_fees(second)
    assert units in ("15", "16") and cents == (int(units) - 6) * 100
    assert second["applied_usage_thresholds"][0]["usage_threshold"]["recurring"] is True
    reached = webhooks(subscribed, "subscription.usage_threshold_reached")
    assert [w["subscription"]["usage_threshold"]["amount_cents"] for w in reached] == [500, 1000]

    # The period's own invoice bills the plan and only what was not invoiced yet.
    calls_made(2)  # 18.00 in all
    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    (closing,) = [
        i for i in invoices_of(org, "prog-1-customer") if i["invoice_type"] == "subscription"
    ]
    left = 1800 - 600 - cents  # 18.00 less what the two progressive invoices billed
    assert charge_fees(closing) == [("18", left)]
    assert closing["fees_amount_cents"] == 1000 + left


def test_events_that_arrive_after_their_period_was_billed_are_kept_but_not_billed(
    local_billow: Any, org: Any
) -> None:
    """As Lago: a finalized invoice never changes. An event timestamped in a period
    already invoiced is stored (``GET /events``) and counted in that period's usage,
    but no invoice bills it, and the next period does not either."""
    calls = metric(org, "calls", "count_agg")
    plan = usage_plan(org, "late", [charge(calls, "standard", properties={"amount": "1"})])
    subscription = subscribe(org, plan, "late-1")
    start, end = period_of(subscription)
    send(org, "late-1", "calls", start + HOUR, "on-time")
    local_billow.wait_idle()
    local_billow.fire_schedule("billing-run", end)
    local_billow.wait_idle()
    (billed,) = invoices_of(org, "late-1-customer")
    assert charge_fees(billed) == [("1", 100)]

    send(org, "late-1", "calls", start + 2 * HOUR, "late")
    local_billow.wait_idle()
    assert (
        org.api.get("/events/late")[1]["event"]["lago_subscription_id"] == subscription["lago_id"]
    )
    (still,) = invoices_of(org, "late-1-customer")
    assert (
        still["fees"] == billed["fees"]
        and still["total_amount_cents"] == billed["total_amount_cents"]
    )
    next_end = billing_period(
        end, interval="monthly", billing_time="anniversary", anchor=start, timezone="UTC"
    ).end
    local_billow.fire_schedule("billing-run", next_end)
    local_billow.wait_idle()
    second = [i for i in invoices_of(org, "late-1-customer") if i["lago_id"] != billed["lago_id"]]
    assert charge_fees(second[0]) == []  # nothing used in the second period


def test_a_subscription_can_have_its_own_thresholds(local_billow: Any, org: Any) -> None:
    calls = metric(org, "calls", "count_agg")
    plan = usage_plan(org, "plain", [charge(calls, "standard", properties={"amount": "1"})])
    status, body = org.api.post("/customers", json={"customer": {"external_id": "own-customer"}})
    assert status == 200, body
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "own-customer",
                "plan_code": plan["code"],
                "external_id": "own-1",
                "plan_overrides": {"amount_cents": 5},
            }
        },
    )
    assert status == 422
    assert body["error_details"] == {"plan_overrides.amount_cents": ["not_supported"]}
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "own-customer",
                "plan_code": plan["code"],
                "external_id": "own-1",
                "billing_time": "anniversary",
                "plan_overrides": {"usage_thresholds": [{"amount_cents": 300}]},
            }
        },
    )
    assert status == 200, body
    start, _ = period_of(body["subscription"])
    for n in range(4):
        send(org, "own-1", "calls", start + HOUR, f"own-{n}")
    local_billow.wait_idle()
    (invoice,) = invoices_of(org, "own-customer")
    assert invoice["invoice_type"] == "progressive_billing"
    # Reached at the third call: the fourth is folded with it or after it.
    ((units, cents),) = charge_fees(invoice)
    assert units in ("3", "4") and cents == int(units) * 100


def test_a_plans_charges_one_at_a_time(local_billow: Any, org: Any, subscribed: Any) -> None:
    calls = metric(org, "calls", "count_agg")
    storage = metric(org, "storage", "sum_agg", field_name="gb")
    plan = usage_plan(
        org, "api", [charge(calls, "standard", properties={"amount": "1"}, code="api_calls")]
    )
    status, body = org.api.post(
        "/plans/api/charges",
        json={
            "charge": charge(
                storage, "package", properties={"amount": "3", "package_size": 10}, code="gb"
            )
        },
    )
    assert status == 200, body
    assert (body["charge"]["code"], body["charge"]["charge_model"]) == ("gb", "package")
    status, listed = org.api.get("/plans/api/charges")
    assert [c["code"] for c in listed["charges"]] == ["api_calls", "gb"]
    assert listed["meta"]["total_count"] == 2
    assert org.api.get("/plans/api")[1]["plan"]["charges"] == listed["charges"]

    status, body = org.api.put(
        "/plans/api/charges/api_calls", json={"charge": {"properties": {"amount": "2"}}}
    )
    assert status == 200, body
    assert body["charge"]["properties"] == {"amount": "2"}
    assert body["charge"]["lago_id"] == plan["charges"][0]["lago_id"]  # its usage stays
    status, body = org.api.put(
        "/plans/api/charges/api_calls", json={"charge": {"properties": {"amount": "-2"}}}
    )
    assert status == 422
    assert org.api.get("/plans/api/charges/api_calls")[1]["charge"]["properties"] == {"amount": "2"}

    refusals = [
        ("/plans/api/charges", charge(storage, "standard", properties={"amount": "1"}), 422),
        (
            "/plans/api/charges",
            charge(storage, "standard", properties={"amount": "1"}, code="gb"),
            422,
        ),
        (
            "/plans/nope/charges",
            charge(storage, "standard", properties={"amount": "1"}, code="x"),
            404,
        ),
    ]
    for path, bad, expected in refusals:
        assert org.api.post(path, json={"charge": bad})[0] == expected, bad

    status, body = org.api.delete("/plans/api/charges/gb")
    assert status == 200 and body["charge"]["code"] == "gb"
    assert org.api.get("/plans/api/charges/gb")[0] == 404
    assert [c["code"] for c in org.api.get("/plans/api/charges")[1]["charges"]] == ["api_calls"]
    local_billow.wait_idle()
    assert len(webhooks(subscribed, "plan.updated")) == 3  # added, changed, removed
