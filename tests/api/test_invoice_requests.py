"""What issuing an invoice asks of DynamoDB.

The invoice worker reads everything billing a subscription needs in one BatchGetItem (the
due index names the subscription's plan and customer) and writes the invoice, numbered,
in one transaction. Reads it can do without are skipped only on facts kept exactly: the
customer's active-coupon counter and the organization's billing hints (its default taxes
and its Stripe Tax connections), which organizations created before the hints lack.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from boto3.dynamodb.types import Binary

from billow.adapters.table import unpacked
from billow.composition import dependencies
from billow.domain.clock import iso
from billow.services.billing_run import DueSubscription
from billow.services.invoice_work import work
from tests.api.billing_helpers import create_plan, invoices_of, next_month_start, stripe_customer
from tests.api.conftest import StripeOrg
from tests.api.dynamodb_calls import dynamodb_calls


def _subscribed(stripe_org: StripeOrg, name: str, wait_for: Any) -> DueSubscription:
    """A Stripe customer on a monthly plan in arrears, and its message of the next run."""
    create_plan(stripe_org, f"{name}-plan", 3100)
    stripe_customer(stripe_org, name, wait_for=wait_for)
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": name,
                "plan_code": f"{name}-plan",
                "external_id": f"{name}-sub",
            }
        },
    )
    assert status == 200, body
    moment = iso(next_month_start() + timedelta(hours=1))
    (item,) = [
        item
        for item in dependencies().store.subscriptions.list_due(moment)
        if item["lago_id"] == body["subscription"]["lago_id"]
    ]
    return DueSubscription.model_validate({**item, "now": moment})


def _issue(due: DueSubscription) -> list[tuple[str, list[str]]]:
    """Bill the due subscription on this thread; the requests it made."""
    with dynamodb_calls() as calls:
        assert work(dependencies(), due) == ["billed"]
    return [(call.operation, call.sort_keys) for call in calls.on_this_thread()]


def test_billing_a_subscription_is_one_read_and_one_write(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    due = _subscribed(stripe_org, "frugal", wait_for)
    assert due.owners() is not None  # the due index names its plan and customer

    requests = _issue(due)

    assert [operation for operation, _ in requests] == ["BatchGetItem", "TransactWriteItems"]
    read = requests[0][1]
    assert [key.split("#")[0] for key in read] == [
        "ORGANIZATION",
        "CUSTOMER",
        "PLAN",
        "COUNTER",  # the customer's active coupons: none, so no Query of them
        "INVOICE_SEQUENCE",  # nobody numbering: the invoice is numbered as it is issued
        "SUBSCRIPTION",
    ]
    (invoice,) = invoices_of(stripe_org, "frugal")
    assert invoice["number"].endswith("-001")
    assert invoice["taxes_amount_cents"] == 0

    # Its outbox item (the invoice's webhook, 4 KB of JSON, and its charge) is written
    # in the transaction, at two write units per started kilobyte: it fits in one.
    (outbox,) = [
        item
        for item in dependencies().store.query_prefix(f"ORG#{stripe_org.id}", "OUTBOX#")
        if "invoice.created" in [event["event_type"] for event in unpacked(item["events"])]
    ]
    events = unpacked(outbox["events"])
    assert [event["event_type"] for event in events] == [
        "invoice.created",
        "invoice.payment_requested",
    ]
    assert events[0]["payload"]["invoice"]["lago_id"] == invoice["lago_id"]
    assert len(json.dumps(events)) > 4000
    assert _item_size(outbox) < 1024


def _item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: its attribute names and values."""
    return sum(
        len(name) + (len(value.value) if isinstance(value, Binary) else len(str(value)))
        for name, value in item.items()
    )


def test_a_due_entry_without_its_owners_reads_the_subscription_first(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Due index entries written before they named plan and customer still bill."""
    due = _subscribed(stripe_org, "older", wait_for)
    bare = DueSubscription(
        organization_id=due.organization_id,
        external_id=due.external_id,
        lago_id=due.lago_id,
        now=due.now,
    )

    requests = _issue(bare)

    assert [operation for operation, _ in requests] == [
        "GetItem",
        "BatchGetItem",
        "TransactWriteItems",
    ]
    assert requests[0][1][0].startswith("SUBSCRIPTION#")
    assert len(invoices_of(stripe_org, "older")) == 1


def test_default_taxes_and_stripe_tax_are_read_when_the_hints_say_so_or_are_missing(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """A default tax makes billing read the taxes (the hint counts it); an organization
    created before the hints were kept (no hint attributes) reads taxes and its
    connection as it always did, so its invoices are taxed all the same."""
    status, body = stripe_org.api.post(
        "/taxes",
        json={
            "tax": {
                "name": "VAT",
                "code": "vat",
                "rate": "20.0",
                "applied_to_organization": True,
            }
        },
    )
    assert status == 200, body
    taxed = _subscribed(stripe_org, "taxed", wait_for)
    requests = _issue(taxed)
    assert [operation for operation, _ in requests] == [
        "BatchGetItem",
        "Query",
        "TransactWriteItems",
    ]
    assert requests[1][1][-1] == "TAX#"
    assert _taxed_at_20_percent(invoices_of(stripe_org, "taxed")[0])

    table = dependencies().store.table
    table.update_item(
        Key={"PK": f"ORG#{stripe_org.id}", "SK": "ORGANIZATION"},
        UpdateExpression="REMOVE billing_hints, default_taxes, stripe_tax_connections",
    )
    unhinted = _subscribed(stripe_org, "unhinted", wait_for)
    requests = _issue(unhinted)
    assert [operation for operation, _ in requests] == [
        "BatchGetItem",
        "GetItem",  # its Stripe connection: does Stripe Tax compute its taxes?
        "Query",
        "TransactWriteItems",
    ]
    assert requests[1][1] == ["INTEGRATION#stripe#stripe"]
    assert _taxed_at_20_percent(invoices_of(stripe_org, "unhinted")[0])


def _taxed_at_20_percent(invoice: dict[str, Any]) -> bool:
    fees = invoice["fees_amount_cents"]
    return fees > 0 and invoice["taxes_amount_cents"] == round(fees * 0.2)
