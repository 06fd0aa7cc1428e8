"""What an invoice's outgoing webhooks and Stripe's incoming events cost in DynamoDB
requests (issue 8): each path is held to the requests it may make, counted by operation
on the table client the local runtime's functions share, with its guarantees checked
alongside (every endpoint served once, new endpoints served at once, old data read)."""

from __future__ import annotations

import json
import uuid
import zlib
from collections import Counter
from datetime import timedelta
from typing import Any

import boto3

from billow.adapters.http_sender import Delivery
from billow.composition import dependencies
from billow.domain.events import webhook_event
from billow.services.webhook_delivery import deliver
from tests.api.billing_helpers import (
    create_plan,
    invoices_of,
    next_month_start,
    payment_intents,
    stripe_customer,
    wait_payment_status,
    webhooks,
)
from tests.api.conftest import StripeOrg
from tests.api.dynamodb_calls import DynamoCalls, dynamodb_calls
from tests.api.test_payments import intent_object, one_off, send_stripe_event, with_fee_add_on
from tests.api.test_stripe_webhooks import deliver as stripe_deliver
from tests.conftest import WebhookReceiver


def _table(local_billow: Any) -> Any:
    resource = boto3.resource(
        "dynamodb", endpoint_url=local_billow.aws_url, region_name="us-east-1"
    )
    return resource.Table("billow")


def _operations(calls: DynamoCalls, prefix: str) -> Counter[str]:
    """The requests naming a sort key that starts with ``prefix``, by operation."""
    return Counter(call.operation for call in calls.naming(prefix))


def _as_one_item_per_endpoint(table: Any, organization_id: str) -> list[dict[str, Any]]:
    """Store the organization's endpoints as Billow did before they were kept together:
    one ``WEBHOOK_ENDPOINT#`` item each, and no endpoints item. Returns them."""
    key = {"PK": f"ORG#{organization_id}", "SK": "WEBHOOK_ENDPOINTS"}
    stored = table.get_item(Key=key, ConsistentRead=True)["Item"]
    endpoints: list[dict[str, Any]] = json.loads(zlib.decompress(stored["data"].value))["endpoints"]
    table.delete_item(Key=key)
    for endpoint in endpoints:
        table.put_item(
            Item={
                "PK": key["PK"],
                "SK": f"WEBHOOK_ENDPOINT#{endpoint['lago_id']}",
                "kind": "webhook_endpoint",
                "data": zlib.compress(json.dumps(endpoint).encode()),
            }
        )
    return endpoints


def _endpoint(org: Any, url: str) -> str:
    status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": url}}
    )
    assert status == 200, body
    return str(body["webhook_endpoint"]["lago_id"])


def test_a_billed_invoices_webhooks_cost_one_read_and_one_write_each(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """A billing run issues the invoice, charges it and hears Stripe's event: its two
    webhooks (``invoice.created``, ``invoice.payment_status_updated``) reach the endpoint
    for one BatchGetItem (the endpoints and the event's deliveries) and one write each."""
    create_plan(stripe_org, "metered-requests", 3100)
    stripe_customer(stripe_org, "frugal", wait_for=wait_for)
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={"subscription": {"external_customer_id": "frugal", "plan_code": "metered-requests"}},
    )
    assert status == 200, body
    local_billow.wait_idle()
    before = len(subscribed.requests)

    with dynamodb_calls() as calls:
        local_billow.fire_schedule("billing-run", next_month_start() + timedelta(hours=1))
        local_billow.wait_idle()

    [invoice] = invoices_of(stripe_org, "frugal")
    assert invoice["payment_status"] == "succeeded"
    sent = [request.json()["webhook_type"] for request in subscribed.requests[before:]]
    assert sorted(sent) == ["invoice.created", "invoice.payment_status_updated"]
    assert _operations(calls, "WEBHOOK_") == {"BatchGetItem": 2, "UpdateItem": 2}
    # Stripe's payment_intent.succeeded only confirms what the charge recorded: its intake
    # read the connection and the invoice the (then unverified) event names at once.
    intake_reads = [
        call
        for call in calls.naming(f"INVOICE#{invoice['lago_id']}")
        if "INTEGRATION#stripe#stripe" in call.sort_keys
        and call.thread != "billow-local-sqs-payments"  # the charge reads them too
    ]
    assert [call.operation for call in intake_reads] == ["BatchGetItem"]


def test_a_stripe_event_confirming_a_payment_costs_one_request(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    customer = stripe_customer(stripe_org, "confirmed", wait_for=wait_for)
    invoice = one_off(stripe_org, "confirmed")
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()
    [charge] = payment_intents(stripe_org, customer)

    with dynamodb_calls() as calls:
        outcome = send_stripe_event(
            local_billow,
            stripe_org,
            "evt_confirms_" + uuid.uuid4().hex[:8],
            "payment_intent.succeeded",
            charge,
        )

    assert outcome == "known"
    [read] = calls.calls
    assert read.operation == "BatchGetItem"
    assert sorted(read.sort_keys) == ["INTEGRATION#stripe#stripe", f"INVOICE#{invoice['lago_id']}"]


def test_a_stored_stripe_event_is_read_once_by_its_consumer(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """A PaymentIntent's success that Billow has not recorded yet is stored, then applied:
    the intake reads the connection and the invoice together, and the consumer reads the
    event and its connection together (the command names both)."""
    with_fee_add_on(stripe_org)
    stripe_customer(stripe_org, "ahead", card=None)
    invoice = one_off(stripe_org, "ahead")
    local_billow.wait_idle()
    intent = intent_object("pi_ahead_" + uuid.uuid4().hex[:12], invoice, stripe_org.id)
    event_id = "evt_ahead_" + uuid.uuid4().hex[:8]

    with dynamodb_calls() as calls:
        outcome = send_stripe_event(
            local_billow, stripe_org, event_id, "payment_intent.succeeded", intent
        )
        local_billow.wait_idle()

    assert outcome == "stored"
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == invoice["total_amount_cents"]
    assert [call.operation for call in calls.naming(f"STRIPE_EVENT#{event_id}")] == [
        "TransactWriteItems",  # intake: the event and the command to apply it
        "BatchGetItem",  # consumer: the event with its connection
        "UpdateItem",  # consumer: the outcome
    ]
    assert _operations(calls, "INTEGRATION#stripe#") == {"BatchGetItem": 2}
    assert len(webhooks(subscribed, "invoice.payment_status_updated")) == 1


def test_one_event_to_an_endpoint_costs_one_read_and_one_write(
    local_billow: Any, org: Any, subscribed: Any
) -> None:
    """The first delivery of a process also reads the organization (for its HMAC key), in
    the same request; later ones sign with the key they kept."""
    sent: list[str] = []

    def send(url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        sent.append(url)
        return Delivery(True, "HTTP 200")

    counts, organization_reads = [], []
    for n in range(2):
        event = webhook_event(org.id, "customer.updated", "customer", {"external_id": f"c{n}"})
        with dynamodb_calls() as calls:
            assert deliver(dependencies(), event, send) == []
        counts.append(calls.by_operation())
        organization_reads.append([call.operation for call in calls.naming("ORGANIZATION")])
    assert counts == [{"BatchGetItem": 1, "UpdateItem": 1}] * 2
    assert organization_reads == [["BatchGetItem"], []]
    assert sent == [subscribed.url] * 2


def test_a_new_endpoint_gets_the_next_event_and_a_deleted_one_does_not(
    local_billow: Any, org: Any
) -> None:
    first, second = WebhookReceiver(), WebhookReceiver()
    for receiver in (first, second):
        receiver.start()
    try:
        first_id = _endpoint(org, first.url)
        org.api.post("/customers", json={"customer": {"external_id": "one"}})
        local_billow.wait_idle()
        second_id = _endpoint(org, second.url)
        org.api.post("/customers", json={"customer": {"external_id": "two"}})
        local_billow.wait_idle()
        assert org.api.delete(f"/webhook_endpoints/{first_id}")[0] == 200
        org.api.put(
            f"/webhook_endpoints/{second_id}",
            json={"webhook_endpoint": {"webhook_url": second.url + "/moved"}},
        )
        org.api.post("/customers", json={"customer": {"external_id": "three"}})
        local_billow.wait_idle()

        def created(receiver: WebhookReceiver) -> list[str]:
            return [
                body["customer"]["external_id"] for body in webhooks(receiver, "customer.created")
            ]

        assert created(first) == ["one", "two"]
        assert created(second) == ["two", "three"]
        assert second.requests[-1].path == "/webhooks/moved"
    finally:
        first.stop()
        second.stop()


def test_endpoints_stored_one_item_each_are_still_served_and_listed(
    local_billow: Any, org: Any, subscribed: Any
) -> None:
    """Organizations made before the endpoints were kept together hold one
    ``WEBHOOK_ENDPOINT#`` item per endpoint: those are read, and copied into the
    organization's endpoints item on first use, so nothing is lost and later events cost
    one read. The old items stay, for a rollback to the code that reads them."""
    table = _table(local_billow)
    pk = f"ORG#{org.id}"
    [endpoint] = _as_one_item_per_endpoint(table, org.id)

    org.api.post("/customers", json={"customer": {"external_id": "legacy-1"}})
    local_billow.wait_idle()
    with dynamodb_calls() as calls:
        org.api.post("/customers", json={"customer": {"external_id": "legacy-2"}})
        local_billow.wait_idle()

    created = [body["customer"]["external_id"] for body in webhooks(subscribed, "customer.created")]
    assert created == ["legacy-1", "legacy-2"]
    assert _operations(calls, "WEBHOOK_") == {"BatchGetItem": 1, "UpdateItem": 1}
    legacy = table.get_item(
        Key={"PK": pk, "SK": f"WEBHOOK_ENDPOINT#{endpoint['lago_id']}"}, ConsistentRead=True
    )
    assert "Item" in legacy
    listed = org.api.get("/webhook_endpoints")[1]["webhook_endpoints"]
    assert [e["lago_id"] for e in listed] == [endpoint["lago_id"]]
    shown = org.api.get(f"/webhook_endpoints/{endpoint['lago_id']}")[1]["webhook_endpoint"]
    assert shown["webhook_url"] == subscribed.url


def test_endpoints_stored_one_item_each_are_kept_when_the_api_changes_them(
    local_billow: Any, org: Any
) -> None:
    """The first change through the API moves the old items too: a new endpoint is added
    after them, the oldest still takes the organization's ``webhook_url``, and the limit
    and unique URLs count them."""
    first = _endpoint(org, "https://hooks.example.test/first")
    second = _endpoint(org, "https://hooks.example.test/second")
    _as_one_item_per_endpoint(_table(local_billow), org.id)

    third = _endpoint(org, "https://hooks.example.test/third")
    status, body = org.api.post(
        "/webhook_endpoints",
        json={"webhook_endpoint": {"webhook_url": "https://hooks.example.test/second"}},
    )
    assert status == 422 and body["error_details"] == {"webhook_url": ["value_already_exist"]}
    status, _ = org.api.put(
        "/organizations", json={"organization": {"webhook_url": "https://hooks.example.test/moved"}}
    )
    assert status == 200
    listed = org.api.get("/webhook_endpoints")[1]["webhook_endpoints"]
    assert [(e["lago_id"], e["webhook_url"]) for e in listed] == [
        (first, "https://hooks.example.test/moved"),
        (second, "https://hooks.example.test/second"),
        (third, "https://hooks.example.test/third"),
    ]


def test_ten_endpoints_of_the_largest_size_fit_their_one_item(org: Any) -> None:
    """The endpoints share one item (DynamoDB: 400 KB at most), so each is bounded: a
    hundred webhook types at most, of ASCII letters; ten of the largest still fit."""
    types = [f"t{n:02d}." + "x" * 96 for n in range(100)]
    for n in range(10):
        status, body = org.api.post(
            "/webhook_endpoints",
            json={
                "webhook_endpoint": {
                    "webhook_url": f"https://hooks.example.test/{n}/" + "p" * 2000,
                    "name": "é" * 255,
                    "event_types": types,
                }
            },
        )
        assert status == 200, body
    listed = org.api.get("/webhook_endpoints?per_page=20")[1]["webhook_endpoints"]
    assert len(listed) == 10 and all(e["event_types"] == types for e in listed)

    for event_types in ([*types, "one.more"], ["invoice.créée"], ["Invoice Created"]):
        status, body = org.api.put(
            f"/webhook_endpoints/{listed[0]['lago_id']}",
            json={
                "webhook_endpoint": {
                    "webhook_url": listed[0]["webhook_url"],
                    "event_types": event_types,
                }
            },
        )
        assert status == 422 and "event_types" in str(body["error_details"]), body


def test_an_unverified_delivery_naming_any_invoice_id_is_refused_cleanly(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    """The intake reads the invoice an event names before it checks the signature: an id
    no key can hold (a lone surrogate, which JSON can spell; too long) is not read, and
    every forged delivery is a 400, never an error."""
    for invoice_id in ("\ud800", "x" * 5000, "a\x00b", 5, None, ["x"]):
        body = json.dumps(
            {
                "id": "evt_forged_" + uuid.uuid4().hex[:8],
                "type": "payment_intent.succeeded",
                "data": {"object": {"id": "pi_1", "metadata": {"lago_invoice_id": invoice_id}}},
            }
        ).encode()
        status, reply = stripe_deliver(local_billow, stripe_org.id, body, "t=1,v1=00")
        assert (status, reply["code"]) == (400, "invalid_webhook"), invoice_id
    # Parsed before the signature is checked, so any shape of body is refused cleanly too.
    for data in ([1], "x", 7, {"object": [1]}, {"object": None}):
        body = json.dumps({"id": "evt_forged", "type": "x", "data": data}).encode()
        status, reply = stripe_deliver(local_billow, stripe_org.id, body, "t=1,v1=00")
        assert (status, reply["code"]) == (400, "invalid_webhook"), data
