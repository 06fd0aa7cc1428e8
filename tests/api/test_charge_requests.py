"""What charging an invoice asks of DynamoDB (issue 8): the payments consumer reads the
invoice, its customer, the customer's Stripe connection and its default card (the copy the
customer's payment-default item keeps) in one request, all named by the message, and
settles the invoice in one transaction. An invoice that names its own card reads that card
in a second request. Messages sent before they named the customer, and payment-default
items stored before they kept the copy, still charge the right card, for a request or two
more."""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from typing import Any

import boto3
import pytest

from billow.domain.events import internal_event
from billow.topology import PAYMENT_REQUESTED
from tests.api.billing_helpers import (
    create_plan,
    invoices_of,
    next_month_start,
    payment_intents,
    payment_methods,
    stripe_customer,
    wait_payment_status,
)
from tests.api.conftest import StripeOrg
from tests.api.dynamodb_calls import DynamoCalls, dynamodb_calls
from tests.api.test_payment_methods import set_as_default, stripe_default, two_cards
from tests.api.test_payments import (
    dead_lettered,
    get_invoice,
    inject_fault,
    one_off,
    with_fee_add_on,
)
from tests.api.test_queue_messages import publish

PAYMENTS_CONSUMER = "billow-local-sqs-payments"
"""The local thread the payments queue's consumer runs on."""


def charge_requests(calls: DynamoCalls) -> list[tuple[str, list[str]]]:
    """Each request of the payments consumer: its operation and the keys it names, less
    those no test can foresee (the organization's partition, counter shards, outbox ids)."""
    unforeseeable = ("ORG#", "COUNTER#", "OUTBOX#")
    return [
        (call.operation, [key for key in call.sort_keys if not key.startswith(unforeseeable)])
        for call in calls.on_thread(PAYMENTS_CONSUMER)
    ]


def customer_lago_id(org: StripeOrg, external_id: str) -> str:
    status, body = org.api.get(f"/customers/{external_id}")
    assert status == 200, body
    return str(body["customer"]["lago_id"])


def charged_cards(org: StripeOrg, stripe_customer_id: str, invoice_id: str) -> list[str]:
    """The cards of the invoice's succeeded PaymentIntents."""
    return [
        intent["payment_method"]
        for intent in payment_intents(org, stripe_customer_id)
        if intent["metadata"]["lago_invoice_id"] == invoice_id and intent["status"] == "succeeded"
    ]


def charge_one_off(
    local_billow: Any, org: StripeOrg, external_id: str, wait_for: Any, **fields: Any
) -> tuple[dict[str, Any], list[tuple[str, list[str]]]]:
    """A one-off invoice, once paid, and the requests its charge made."""
    with dynamodb_calls() as calls:
        invoice = one_off(org, external_id, **fields)
        wait_payment_status(org, invoice["lago_id"], "succeeded", wait_for)
        local_billow.wait_idle()
    return invoice, charge_requests(calls)


def test_charging_a_billed_invoice_is_one_read_and_one_transaction(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Before: the invoice, the customer and the connection were three GetItems and the
    card a Query of all the customer's methods (five requests with the transaction)."""
    create_plan(stripe_org, "monthly", 3100)
    cus = stripe_customer(stripe_org, "billed", wait_for=wait_for)
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={"subscription": {"external_customer_id": "billed", "plan_code": "monthly"}},
    )
    assert status == 200, body
    local_billow.wait_idle()
    customer = customer_lago_id(stripe_org, "billed")

    with dynamodb_calls() as calls:
        local_billow.fire_schedule("billing-run", next_month_start() + timedelta(hours=1))
        local_billow.wait_idle()

    (invoice,) = invoices_of(stripe_org, "billed")
    assert invoice["payment_status"] == "succeeded"
    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [stripe_default(stripe_org, cus)]
    assert charge_requests(calls) == [
        ("BatchGetItem", named_by_the_message(invoice, "billed", customer)),
        ("TransactWriteItems", [f"INVOICE#{invoice['lago_id']}"]),
    ]


def named_by_the_message(invoice: dict[str, Any], external_id: str, customer: str) -> list[str]:
    """What a charge message names: the invoice, its customer, the customer's connection
    and the item holding its default card."""
    return [
        f"INVOICE#{invoice['lago_id']}",
        f"CUSTOMER#{external_id}",
        "INTEGRATION#stripe#stripe",
        f"PAYMENT_DEFAULT#{customer}",
    ]


def test_the_card_read_by_key_follows_the_default_and_the_invoices_own_choice(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """The default's copy moves with every change to the customer's cards (a card saved
    in Stripe, a choice made through the API, a deletion), and an invoice that names its
    card is charged with that one, read by its own key."""
    with_fee_add_on(stripe_org, 1500)
    cus, first, second = two_cards(local_billow, stripe_org, "cards", wait_for)
    customer = customer_lago_id(stripe_org, "cards")
    ids = {m["provider_method_id"]: m["lago_id"] for m in payment_methods(stripe_org, "cards")}

    def reads(card_key: str, invoice: dict[str, Any]) -> list[tuple[str, list[str]]]:
        own_card = (
            []
            if card_key.startswith("PAYMENT_DEFAULT#")
            else [("BatchGetItem", ["INTEGRATION#stripe#stripe", card_key])]
        )
        return [
            ("BatchGetItem", named_by_the_message(invoice, "cards", customer)),
            *own_card,
            ("TransactWriteItems", [f"INVOICE#{invoice['lago_id']}"]),
        ]

    # The card saved through a setup intent became the default.
    invoice, requests = charge_one_off(local_billow, stripe_org, "cards", wait_for)
    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [second]
    assert requests == reads(f"PAYMENT_DEFAULT#{customer}", invoice)

    # An invoice naming the other card is charged with it.
    invoice, requests = charge_one_off(
        local_billow,
        stripe_org,
        "cards",
        wait_for,
        payment_method={"payment_method_type": "provider", "payment_method_id": ids[first]},
    )
    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [first]
    assert requests == reads(f"PAYMENT_METHOD#{customer}#{ids[first]}", invoice)

    # The customer's choice through the API.
    status, body = set_as_default(stripe_org, "cards", ids[first])
    assert status == 200, body
    invoice, requests = charge_one_off(local_billow, stripe_org, "cards", wait_for)
    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [first]
    assert requests == reads(f"PAYMENT_DEFAULT#{customer}", invoice)

    # Deleting the default leaves none (as Lago): the next invoice waits for one.
    status, body = stripe_org.api.delete(f"/customers/cards/payment_methods/{ids[first]}")
    assert status == 200, body
    waiting = one_off(stripe_org, "cards")
    local_billow.wait_idle()
    assert get_invoice(stripe_org, waiting["lago_id"])["payment_status"] == "pending"
    assert charged_cards(stripe_org, cus, waiting["lago_id"]) == []


def charged_in_vain(
    local_billow: Any, org: StripeOrg, external_id: str, amount_cents: int, wait_for: Any
) -> tuple[str, str, dict[str, Any]]:
    """A Stripe customer's one-off invoice whose own charge message never reached Stripe
    (it ended in the DLQ, the attempt in flight): its Stripe id, lago id and invoice."""
    with_fee_add_on(org, amount_cents)
    cus = stripe_customer(org, external_id, wait_for=wait_for)
    customer = customer_lago_id(org, external_id)
    inject_fault(local_billow, org, "/v1/payment_intents", 1000)
    invoice = one_off(org, external_id)
    wait_for(lambda: dead_lettered(local_billow, "payments", invoice["lago_id"]), timeout=60)
    inject_fault(local_billow, org, "/v1/payment_intents", 0)
    return cus, customer, invoice


@pytest.mark.usefixtures("quick_sdk_retries")
def test_a_charge_message_sent_before_it_named_the_customer_still_charges(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """A message already queued when the consumer learned to read the invoice and its
    customer together names only the invoice: the invoice is read first, then the rest.

    The invoice's own message never reaches Stripe (it ends in the DLQ, the attempt in
    flight); then an old-style message for that attempt arrives."""
    cus, customer, invoice = charged_in_vain(local_billow, stripe_org, "older", 1700, wait_for)
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"

    with dynamodb_calls() as calls:
        publish(
            internal_event(
                stripe_org.id, PAYMENT_REQUESTED, {"invoice_id": invoice["lago_id"], "attempt": 1}
            )
        )
        paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
        local_billow.wait_idle()

    assert paid["total_paid_amount_cents"] == 1700
    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [stripe_default(stripe_org, cus)]
    assert charge_requests(calls) == [
        ("GetItem", [f"INVOICE#{invoice['lago_id']}"]),
        ("GetItem", ["CUSTOMER#older"]),
        ("BatchGetItem", ["INTEGRATION#stripe#stripe", f"PAYMENT_DEFAULT#{customer}"]),
        ("TransactWriteItems", [f"INVOICE#{invoice['lago_id']}"]),
    ]


@pytest.mark.usefixtures("quick_sdk_retries")
def test_a_charge_message_naming_what_moved_since_reads_again_and_charges_rightly(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """What the message names is checked against what is read: a connection or customer
    id that no longer matches (the customer moved to another connection since) is not
    trusted, and the charge reads the customer's own connection and card again."""
    cus, customer, invoice = charged_in_vain(local_billow, stripe_org, "moved", 1900, wait_for)

    with dynamodb_calls() as calls:
        publish(
            internal_event(
                stripe_org.id,
                PAYMENT_REQUESTED,
                {
                    "invoice_id": invoice["lago_id"],
                    "attempt": 1,
                    "external_customer_id": "moved",
                    "lago_customer_id": customer,
                    "connection_code": "a-connection-it-left",
                },
            )
        )
        paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
        local_billow.wait_idle()

    assert paid["total_paid_amount_cents"] == 1900
    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [stripe_default(stripe_org, cus)]
    assert charge_requests(calls) == [
        (
            "BatchGetItem",
            [
                f"INVOICE#{invoice['lago_id']}",
                "CUSTOMER#moved",
                "INTEGRATION#stripe#a-connection-it-left",
                f"PAYMENT_DEFAULT#{customer}",
            ],
        ),
        ("BatchGetItem", ["INTEGRATION#stripe#stripe", f"PAYMENT_DEFAULT#{customer}"]),
        ("TransactWriteItems", [f"INVOICE#{invoice['lago_id']}"]),
    ]


def _table(local_billow: Any) -> Any:
    resource = boto3.resource(
        "dynamodb", endpoint_url=local_billow.aws_url, region_name="us-east-1"
    )
    return resource.Table("billow")


def _store_as_before_the_copy(local_billow: Any, key: dict[str, str], stored_how: str) -> None:
    """The customer's payment-default item as Billow stored it before it kept the default's
    copy (``stripped``), or before the item existed at all (``absent``)."""
    table = _table(local_billow)
    if stored_how == "absent":
        table.delete_item(Key=key)
        return
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    state = json.loads(zlib.decompress(item["data"].value))
    assert state.pop("holds_default") is True and state.pop("default_method")
    table.put_item(Item={**item, "data": zlib.compress(json.dumps(state).encode())})


@pytest.mark.parametrize("stored_how", ["stripped", "absent"])
def test_a_customer_whose_default_was_stored_without_its_copy_is_charged_its_default(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any, stored_how: str
) -> None:
    """Without the copy the consumer lists the customer's cards to find the default, as it
    always did; the next change to the cards writes the copy."""
    with_fee_add_on(stripe_org, 1300)
    cus = stripe_customer(stripe_org, "legacy", wait_for=wait_for)
    customer = customer_lago_id(stripe_org, "legacy")
    key = {"PK": f"ORG#{stripe_org.id}", "SK": f"PAYMENT_DEFAULT#{customer}"}
    _store_as_before_the_copy(local_billow, key, stored_how)

    invoice, requests = charge_one_off(local_billow, stripe_org, "legacy", wait_for)

    assert charged_cards(stripe_org, cus, invoice["lago_id"]) == [stripe_default(stripe_org, cus)]
    assert requests == [
        ("BatchGetItem", named_by_the_message(invoice, "legacy", customer)),
        ("BatchGetItem", ["INTEGRATION#stripe#stripe", f"PAYMENT_DEFAULT#{customer}"]),
        ("Query", [f"PAYMENT_METHOD#{customer}#"]),
        ("TransactWriteItems", [f"INVOICE#{invoice['lago_id']}"]),
    ]
