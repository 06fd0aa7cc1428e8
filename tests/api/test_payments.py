"""Invoices and their payments end to end: one-off invoices, charges, Stripe's events
(duplicated, late, early, foreign), payment links, retries, voiding, 3-D Secure and
Stripe's rate limits, observed through the API, Lago webhooks and Stripe itself."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
import stripe
from jsonschema import Draft202012Validator

from billow.composition import dependencies
from billow.domain.errors import ValidationFailed
from billow.services.payments import attempts
from tests.api.billing_helpers import (
    DECLINED,
    THREE_D_SECURE,
    VISA,
    create_plan,
    invoices_of,
    payment_intents,
    payment_methods,
    stripe_customer,
    wait_payment_status,
    webhooks,
)
from tests.api.conftest import StripeOrg, another_stripe_org, attach_card
from tests.api.test_lago_contract import CONTRACT, _registry
from tests.api.test_stripe_webhooks import deliver, event, signed, webhook_secret

needs_contract = pytest.mark.skipif(
    not CONTRACT.exists(), reason=f"Lago's contract not found at {CONTRACT}"
)
NULL_UNTIL_GENERATED = frozenset({"file_url"})
"""Typed as strings by the document, but null in Lago's own bodies until the PDF exists
(Billow renders no PDFs): the key is present, as Lago sends it."""

# -- steps ---------------------------------------------------------------------------------


def create_tax(org: Any, code: str, rate: str) -> dict[str, Any]:
    status, body = org.api.post(
        "/taxes", json={"tax": {"name": f"Tax {code}", "code": code, "rate": rate}}
    )
    assert status == 200, body
    return body["tax"]  # type: ignore[no-any-return]


def create_add_on(org: Any, code: str, amount_cents: int, **fields: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/add_ons",
        json={
            "add_on": {
                "name": code.title(),
                "code": code,
                "amount_cents": amount_cents,
                "amount_currency": "EUR",
                **fields,
            }
        },
    )
    assert status == 200, body
    return body["add_on"]  # type: ignore[no-any-return]


def one_off(
    org: Any, customer: str, fees: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    """A one-off invoice (one ``fee`` add-on line unless ``fees`` says otherwise)."""
    status, body = org.api.post(
        "/invoices",
        json={
            "invoice": {
                "external_customer_id": customer,
                "fees": fees or [{"add_on_code": "fee"}],
                **fields,
            }
        },
    )
    assert status == 200, body
    return body["invoice"]  # type: ignore[no-any-return]


def get_invoice(org: Any, lago_id: str) -> dict[str, Any]:
    status, body = org.api.get(f"/invoices/{lago_id}")
    assert status == 200, body
    return body["invoice"]  # type: ignore[no-any-return]


def charges_of(org: StripeOrg, stripe_customer_id: str, invoice_id: str) -> list[dict[str, Any]]:
    """The PaymentIntents in Stripe that name ``invoice_id`` (charges and paid links)."""
    return [
        intent
        for intent in payment_intents(org, stripe_customer_id)
        if intent["metadata"].get("lago_invoice_id") == invoice_id
    ]


def succeeded(intents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [intent for intent in intents if intent["status"] == "succeeded"]


def refunds_of(org: StripeOrg, payment_intent_id: str) -> list[dict[str, Any]]:
    listed = org.stripe.v1.refunds.list(params={"payment_intent": payment_intent_id})
    return [refund.to_dict() for refund in listed.data]


def idempotency_keys(org: StripeOrg, event_type: str, payment_intent_id: str) -> list[str]:
    """The idempotency keys of the requests that made Stripe emit ``event_type`` for it."""
    listed = org.stripe.v1.events.list(params={"type": event_type, "limit": 100})
    return [
        item["request"]["idempotency_key"]
        for item in (e.to_dict() for e in listed.data)
        if item["data"]["object"]["id"] == payment_intent_id
    ]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_browser = urllib.request.build_opener(_NoRedirect)


def browse(url: str, form: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """The customer's browser on the hosted checkout page: GET it, or submit its form."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with _browser.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def send_stripe_event(
    local_billow: Any, org: Any, event_id: str, kind: str, obj: dict[str, Any]
) -> str:
    """A signed delivery to ``org``'s Stripe webhook, as Stripe makes it; the intake's outcome."""
    body = event(event_id, kind, obj)
    status, reply = deliver(
        local_billow, org.id, body, signed(body, webhook_secret(local_billow, org.id))
    )
    assert status == 200, reply
    return str(reply["outcome"])


def intent_object(
    intent_id: str,
    invoice: dict[str, Any],
    organization_id: str,
    *,
    status: str = "succeeded",
    attempt: int | None = 1,
    error_code: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent as Stripe's events carry it, with the metadata Billow sets."""
    metadata = {
        "lago_invoice_id": invoice["lago_id"],
        "lago_customer_id": invoice["customer"]["lago_id"],
        "lago_organization_id": organization_id,
        "invoice_number": invoice["number"],
        "invoice_type": invoice["invoice_type"],
        "invoice_issuing_date": invoice["issuing_date"],
    }
    if attempt is not None:
        metadata["payment_attempt"] = str(attempt)
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": invoice["total_amount_cents"],
        "amount_received": invoice["total_amount_cents"] if status == "succeeded" else 0,
        "currency": invoice["currency"].lower(),
        "customer": invoice["customer"]["billing_configuration"]["provider_customer_id"],
        "status": status,
        "metadata": metadata,
        "last_payment_error": (
            {"code": error_code, "message": "Your card was declined."} if error_code else None
        ),
    }


def stripe_config(local_billow: Any, method: str, path: str, form: dict[str, str]) -> Any:
    """One of the emulator's ``/_config`` endpoints (faults, request counts)."""
    data = urllib.parse.urlencode(form).encode()
    if method == "POST":
        request = urllib.request.Request(f"{local_billow.stripe_url}{path}", data=data)
    else:
        request = urllib.request.Request(
            f"{local_billow.stripe_url}{path}?{data.decode()}", method=method
        )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def inject_fault(local_billow: Any, org: Any, path: str, count: int, **options: str) -> None:
    """The account's next ``count`` Stripe requests under ``path`` fail as Stripe fails
    (a 500 unless ``status`` or a ``code`` says otherwise; ``when``, ``should_retry``: see
    the emulator's ``/_config/faults``). ``count=0`` ends the outage."""
    status = {} if "code" in options or "status" in options else {"status": "500"}
    stripe_config(
        local_billow,
        "POST",
        "/_config/faults",
        {"api_key": org.secret_key, "path_prefix": path, "count": str(count), **status, **options},
    )


def dead_lettered(local_billow: Any, queue: str, marker: str) -> bool:
    """A message naming ``marker`` (an invoice, an organization) is in ``queue``'s DLQ."""
    return any(marker in body for body in local_billow.dlq_messages(queue))


def with_fee_add_on(org: Any, amount_cents: int = 2000) -> None:
    create_add_on(org, "fee", amount_cents)


# 1. One-off invoices ------------------------------------------------------------------------


def test_one_off_invoices_are_taxed_numbered_announced_and_charged_once(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_tax(stripe_org, "vat", "20")
    create_tax(stripe_org, "reduced", "5.5")
    add_on = create_add_on(stripe_org, "setup", 1000, description="Setup fee")
    cus = stripe_customer(stripe_org, "acme", wait_for=wait_for)
    status, body = stripe_org.api.post(
        "/customers", json={"customer": {"external_id": "acme", "tax_codes": ["vat"]}}
    )
    assert status == 200, body

    invoice = one_off(
        stripe_org,
        "acme",
        [
            {"add_on_code": "setup", "units": "3"},
            {
                "add_on_code": "setup",
                "units": "2",
                "unit_amount_cents": 1300,
                "invoice_display_name": "Rush setup",
                "tax_codes": ["reduced"],
            },
        ],
    )
    assert invoice["invoice_type"] == "one_off"
    assert invoice["status"] == "finalized"
    assert invoice["currency"] == "EUR"
    assert invoice["customer"]["external_id"] == "acme"
    assert invoice["sequential_id"] == 1 and invoice["number"].endswith("-001")
    first, second = invoice["fees"]
    assert (first["units"], first["amount_cents"], first["taxes_amount_cents"]) == ("3", 3000, 600)
    assert first["item"]["type"] == "add_on" and first["item"]["code"] == "setup"
    assert first["item"]["lago_item_id"] == add_on["lago_id"]
    assert first["description"] == "Setup fee"
    assert [tax["tax_code"] for tax in first["applied_taxes"]] == ["vat"]
    assert (second["units"], second["amount_cents"], second["taxes_amount_cents"]) == (
        "2",
        2600,
        143,
    )
    assert second["item"]["invoice_display_name"] == "Rush setup"
    assert [tax["tax_code"] for tax in second["applied_taxes"]] == ["reduced"]
    assert second["total_amount_cents"] == 2743
    assert invoice["fees_amount_cents"] == 5600
    assert invoice["sub_total_excluding_taxes_amount_cents"] == 5600
    assert invoice["taxes_amount_cents"] == 743
    assert invoice["sub_total_including_taxes_amount_cents"] == 6343
    assert invoice["total_amount_cents"] == 6343
    assert invoice["coupons_amount_cents"] == 0
    assert sorted((t["tax_code"], t["amount_cents"]) for t in invoice["applied_taxes"]) == [
        ("reduced", 143),
        ("vat", 600),
    ]

    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 6343 and paid["total_due_amount_cents"] == 0

    # skip_psp: issued (next number) but never sent to Stripe; a zero total is paid at once.
    skipped = one_off(stripe_org, "acme", [{"add_on_code": "setup"}], skip_psp=True)
    assert skipped["number"].endswith("-002") and skipped["sequential_id"] == 2
    assert skipped["total_amount_cents"] == 1200
    free = one_off(stripe_org, "acme", [{"add_on_code": "setup", "unit_amount_cents": 0}])
    assert free["number"].endswith("-003")
    assert (free["total_amount_cents"], free["payment_status"]) == (0, "succeeded")

    local_billow.wait_idle()
    assert get_invoice(stripe_org, skipped["lago_id"])["payment_status"] == "pending"
    intents = payment_intents(stripe_org, cus)
    assert [(pi["status"], pi["amount"], pi["currency"]) for pi in intents] == [
        ("succeeded", 6343, "eur")
    ]
    assert intents[0]["metadata"]["lago_invoice_id"] == invoice["lago_id"]
    assert intents[0]["metadata"]["lago_organization_id"] == stripe_org.id
    announced = webhooks(subscribed, "invoice.one_off_created")
    assert [w["invoice"]["lago_id"] for w in announced] == [
        invoice["lago_id"],
        skipped["lago_id"],
        free["lago_id"],
    ]
    assert webhooks(subscribed, "invoice.created") == []
    assert [
        (w["invoice"]["lago_id"], w["invoice"]["payment_status"])
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == [(invoice["lago_id"], "succeeded")]


def test_one_off_invoices_stripe_could_not_charge_are_refused_unissued(
    stripe_org: StripeOrg, wait_for: Any
) -> None:
    """A one-off total (taxes included) above what one Stripe charge takes used to be
    issued and charged (a 10**33-cent invoice); an unknown tax code on a fee was ignored
    (taxed 0). Now a 422 and a 404: no invoice, no number used, nothing sent to Stripe."""
    create_tax(stripe_org, "vat", "20")
    create_add_on(stripe_org, "seat", 1000)
    cus = stripe_customer(stripe_org, "big", wait_for=wait_for)
    seat = {"add_on_code": "seat"}

    def issue(fees: list[dict[str, Any]], **fields: Any) -> tuple[int, Any]:
        return stripe_org.api.post(  # type: ignore[no-any-return]
            "/invoices",
            json={"invoice": {"external_customer_id": "big", "fees": fees, **fields}},
        )

    too_large = {"total_amount_cents": ["value_is_out_of_range"]}
    for fees, fields in (
        ([{**seat, "units": "10000000000000000000", "unit_amount_cents": 10**13}], {}),
        (
            [{**seat, "units": "10000000000000000000", "unit_amount_cents": 10**13}],
            {"skip_psp": True},
        ),
        ([{**seat, "unit_amount_cents": 90_000_000, "tax_codes": ["vat"]}], {}),
        ([{**seat, "unit_amount_cents": 60_000_000}] * 2, {}),
    ):
        status, body = issue(fees, **fields)
        assert (status, body.get("error_details")) == (422, too_large), (fees, body)

    status, body = issue([{**seat, "tax_codes": ["vat", "nope"]}])
    assert (status, body["code"]) == (404, "tax_not_found"), body
    status, body = issue([seat], currency="ZZZ")
    assert status == 422 and set(body["error_details"]) == {"currency"}, body
    status, body = issue([{**seat, "from_datetime": 1_700_000_000}])
    assert status == 422 and body["error_details"] == {"fees.0.from_datetime": ["invalid_date"]}
    assert invoices_of(stripe_org, "big") == []
    assert payment_intents(stripe_org, cus) == []

    largest = one_off(stripe_org, "big", [{**seat, "unit_amount_cents": 99_999_999}])
    assert largest["total_amount_cents"] == 99_999_999 and largest["number"].endswith("-001")


def test_invoice_numbers_are_sequential_per_organization(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    other = another_stripe_org(local_billow)
    for org in (stripe_org, other):
        with_fee_add_on(org)
        assert org.api.post("/customers", json={"customer": {"external_id": "c"}})[0] == 200
    numbers = [
        one_off(org, "c", skip_psp=True)["number"]
        for org in (stripe_org, stripe_org, other, stripe_org)
    ]
    assert [number[-4:] for number in numbers] == ["-001", "-002", "-001", "-003"]
    assert numbers[0][:-4] != numbers[2][:-4]  # each organization has its own prefix


# 2. No payment method yet -------------------------------------------------------------------


def _save_card_through_checkout(
    local_billow: Any, org: StripeOrg, external_id: str, cus: str
) -> None:
    status, body = org.api.post(f"/customers/{external_id}/checkout_url")
    assert status == 200, body
    status, _, _ = browse(body["customer"]["checkout_url"], {"card": VISA})
    assert status == 303


def _save_card_with_setup_intent(
    local_billow: Any, org: StripeOrg, external_id: str, cus: str
) -> None:
    card = attach_card(org.stripe, cus)
    outcome = send_stripe_event(
        local_billow,
        org,
        f"evt_setup_{uuid.uuid4().hex[:12]}",
        "setup_intent.succeeded",
        {
            "id": "seti_" + uuid.uuid4().hex[:12],
            "object": "setup_intent",
            "customer": cus,
            "payment_method": card,
        },
    )
    assert outcome == "stored"


def _save_default_card_in_stripe(
    local_billow: Any, org: StripeOrg, external_id: str, cus: str
) -> None:
    attach_card(org.stripe, cus, default=True)  # Stripe tells Billow: customer.updated


@pytest.mark.parametrize(
    "save_card",
    [_save_card_through_checkout, _save_card_with_setup_intent, _save_default_card_in_stripe],
    ids=["checkout_page", "setup_intent_succeeded", "customer_updated"],
)
def test_an_invoice_waits_for_a_payment_method_then_is_charged_once(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any, save_card: Any
) -> None:
    with_fee_add_on(stripe_org, 2500)
    cus = stripe_customer(stripe_org, "cardless", card=None)
    invoice = one_off(stripe_org, "cardless")
    local_billow.wait_idle()
    waiting = get_invoice(stripe_org, invoice["lago_id"])
    assert waiting["payment_status"] == "pending"
    assert payment_intents(stripe_org, cus) == []
    assert webhooks(subscribed, "invoice.payment_failure") == []
    assert webhooks(subscribed, "invoice.payment_status_updated") == []

    save_card(local_billow, stripe_org, "cardless", cus)
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 2500
    local_billow.wait_idle()
    intents = payment_intents(stripe_org, cus)
    assert [(pi["status"], pi["amount"]) for pi in intents] == [("succeeded", 2500)]
    assert intents[0]["metadata"]["payment_attempt"] == "2"
    assert [m["is_default"] for m in payment_methods(stripe_org, "cardless")] == [True]
    assert len(webhooks(subscribed, "invoice.payment_status_updated")) == 1
    assert webhooks(subscribed, "invoice.payment_failure") == []


def test_an_invoice_waits_for_a_default_then_is_charged_once_one_is_chosen(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Deleting the default card leaves the other card listed but not the default (as in
    Lago): the next invoice waits, and choosing the other card as default charges it."""
    with_fee_add_on(stripe_org, 2500)
    cus = stripe_customer(stripe_org, "chooser", wait_for=wait_for)
    _save_card_with_setup_intent(local_billow, stripe_org, "chooser", cus)
    wait_for(lambda: len(payment_methods(stripe_org, "chooser")) == 2)
    local_billow.wait_idle()
    methods = payment_methods(stripe_org, "chooser")
    [default] = [m for m in methods if m["is_default"]]
    [other] = [m for m in methods if not m["is_default"]]
    status, body = stripe_org.api.delete(f"/customers/chooser/payment_methods/{default['lago_id']}")
    assert status == 200, body

    invoice = one_off(stripe_org, "chooser")
    local_billow.wait_idle()
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"
    assert payment_intents(stripe_org, cus) == []

    status, body = stripe_org.api.put(
        f"/customers/chooser/payment_methods/{other['lago_id']}/set_as_default"
    )
    assert status == 200, body
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()
    intents = payment_intents(stripe_org, cus)
    assert [(pi["status"], pi["payment_method"]) for pi in intents] == [
        ("succeeded", other["provider_method_id"])
    ]


# 3. Duplicated, late, early and foreign Stripe events ------------------------------------


def test_redelivered_success_changes_the_status_once(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "dup", wait_for=wait_for)
    invoice = one_off(stripe_org, "dup")
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()
    (charge,) = payment_intents(stripe_org, cus)
    before = get_invoice(stripe_org, invoice["lago_id"])

    outcomes = [
        send_stripe_event(local_billow, stripe_org, event_id, "payment_intent.succeeded", charge)
        for event_id in ("evt_dup_success", "evt_dup_success", "evt_dup_other_id")
    ]
    # The invoice already records this PaymentIntent as its payment (Stripe's answer to
    # the charge said so): each delivery is acknowledged, and none is stored or queued.
    assert outcomes == ["known", "known", "known"]
    table = boto3.resource("dynamodb", endpoint_url=local_billow.aws_url, region_name="us-east-1")
    for event_id in ("evt_dup_success", "evt_dup_other_id"):
        key = {"PK": f"ORG#{stripe_org.id}", "SK": f"STRIPE_EVENT#{event_id}"}
        assert "Item" not in table.Table("billow").get_item(Key=key, ConsistentRead=True)
    # A late failure of the same attempt after it succeeded changes nothing either.
    failed = intent_object(
        charge["id"],
        paid,
        stripe_org.id,
        status="requires_payment_method",
        error_code="card_declined",
    )
    send_stripe_event(
        local_billow, stripe_org, "evt_dup_late_fail", "payment_intent.payment_failed", failed
    )
    local_billow.wait_idle()

    after = get_invoice(stripe_org, invoice["lago_id"])
    assert after == before
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["succeeded"]
    assert webhooks(subscribed, "invoice.payment_failure") == []
    assert refunds_of(stripe_org, charge["id"]) == []
    assert len(payment_intents(stripe_org, cus)) == 1


def test_a_late_failure_of_an_earlier_attempt_never_moves_the_status_back(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "late", card=DECLINED, wait_for=wait_for)
    invoice = one_off(stripe_org, "late")
    failed = wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    local_billow.wait_idle()
    (first,) = payment_intents(stripe_org, cus)

    # The declined card goes away; attempt 2 (a manual retry) waits for a new one.
    (method,) = payment_methods(stripe_org, "late")
    stripe_org.stripe.v1.payment_methods.detach(method["provider_method_id"])
    wait_for(lambda: payment_methods(stripe_org, "late") == [] or None)
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status == 200 and body["invoice"]["payment_status"] == "pending", body
    local_billow.wait_idle()

    late = intent_object(
        first["id"],
        failed,
        stripe_org.id,
        status="requires_payment_method",
        error_code="card_declined",
    )
    send_stripe_event(local_billow, stripe_org, "evt_late_1", "payment_intent.payment_failed", late)
    local_billow.wait_idle()
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"
    assert len(webhooks(subscribed, "invoice.payment_failure")) == 1

    attach_card(stripe_org.stripe, cus, default=True)
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    send_stripe_event(local_billow, stripe_org, "evt_late_2", "payment_intent.payment_failed", late)
    local_billow.wait_idle()
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "succeeded"
    assert len(webhooks(subscribed, "invoice.payment_failure")) == 1
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["failed", "succeeded"]
    assert [pi["status"] for pi in payment_intents(stripe_org, cus)].count("succeeded") == 1


def test_an_event_that_outruns_billows_own_write_is_matched_by_metadata(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Stripe charged (the worker's write is still to come) and its event arrives first:
    the metadata alone finds the invoice, and the card arriving later charges nothing."""
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "early", card=None)
    invoice = one_off(stripe_org, "early")
    local_billow.wait_idle()
    early = intent_object("pi_early_" + uuid.uuid4().hex[:12], invoice, stripe_org.id)
    send_stripe_event(local_billow, stripe_org, "evt_early", "payment_intent.succeeded", early)
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == invoice["total_amount_cents"]

    attach_card(stripe_org.stripe, cus, default=True)
    wait_for(lambda: payment_methods(stripe_org, "early") or None)
    local_billow.wait_idle()
    assert payment_intents(stripe_org, cus) == []
    assert len(webhooks(subscribed, "invoice.payment_status_updated")) == 1


def test_events_naming_another_organization_are_ignored(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    other = another_stripe_org(local_billow)
    with_fee_add_on(other)
    stripe_customer(other, "theirs", card=None)
    theirs = one_off(other, "theirs")
    local_billow.wait_idle()

    # Signed for this organization's endpoint, but naming the other one's invoice.
    foreign = intent_object("pi_foreign_" + uuid.uuid4().hex[:8], theirs, other.id)
    send_stripe_event(
        local_billow, stripe_org, "evt_foreign_1", "payment_intent.succeeded", foreign
    )
    claimed = intent_object("pi_claimed_" + uuid.uuid4().hex[:8], theirs, stripe_org.id)
    send_stripe_event(
        local_billow, stripe_org, "evt_foreign_2", "payment_intent.succeeded", claimed
    )
    local_billow.wait_idle()
    assert get_invoice(other, theirs["lago_id"])["payment_status"] == "pending"
    assert stripe_org.api.get(f"/invoices/{theirs['lago_id']}")[0] == 404
    assert stripe_org.api.get("/invoices")[1]["invoices"] == []


# 4. Payment links ---------------------------------------------------------------------------


def test_a_payment_link_pays_a_failed_invoice(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org, 4200)
    cus = stripe_customer(stripe_org, "linked", card=DECLINED, wait_for=wait_for)
    invoice = one_off(stripe_org, "linked")
    wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)

    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")
    assert status == 200, body
    details = body["invoice_payment_details"]
    assert details["lago_invoice_id"] == invoice["lago_id"]
    assert details["lago_customer_id"] == invoice["customer"]["lago_id"]
    assert details["external_customer_id"] == "linked"
    assert details["payment_provider"] == "stripe"
    url = details["payment_url"]
    assert url.startswith(f"{local_billow.stripe_url}/checkout/cs_")
    status, _, page = browse(url)
    assert status == 200 and "Pay 42.00 EUR" in page and invoice["number"] in page

    status, headers, _ = browse(url, {"card": VISA})
    assert status == 303 and headers["Location"].endswith("/checkout/completed")
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 4200

    # Paid: no new link, no retry, no voiding; Lago answers a retry or a void 405.
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")
    assert (status, body["code"], body["error_details"]) == (
        422,
        "validation_errors",
        {"base": ["invalid_invoice_status_or_payment_status"]},
    )
    for action, code in (("retry_payment", "invalid_status"), ("void", "not_voidable")):
        status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/{action}")
        assert (status, body) == (
            405,
            {"status": 405, "error": "Method Not Allowed", "code": code},
        ), action
    assert stripe_org.api.post(f"/invoices/{uuid.uuid4()}/payment_url")[0] == 404
    local_billow.wait_idle()
    (link_payment,) = succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))
    assert link_payment["amount"] == 4200
    assert "payment_attempt" not in link_payment["metadata"]
    assert refunds_of(stripe_org, link_payment["id"]) == []
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["failed", "succeeded"]


def test_a_voided_invoice_gets_no_payment_link(stripe_org: StripeOrg, wait_for: Any) -> None:
    with_fee_add_on(stripe_org)
    stripe_customer(stripe_org, "voids", wait_for=wait_for)
    invoice = one_off(stripe_org, "voids", skip_psp=True)
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")
    assert status == 200, body
    url = body["invoice_payment_details"]["payment_url"]
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/void")
    assert status == 200 and body["invoice"]["status"] == "voided", body
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")
    assert status == 422, body
    assert browse(url, {"card": VISA})[0] == 410  # the open link was closed with it


def test_the_automatic_charge_closes_an_open_payment_link(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "both", card=None)
    invoice = one_off(stripe_org, "both")
    local_billow.wait_idle()
    url = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")[1][
        "invoice_payment_details"
    ]["payment_url"]

    attach_card(stripe_org.stripe, cus, default=True)  # the waiting invoice is charged
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    status, _, page = browse(url, {"card": VISA})
    assert status == 410 and "expired" in page
    local_billow.wait_idle()
    assert len(succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))) == 1


def test_a_paid_link_and_a_retry_never_both_take_the_money(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """The link is paid and a retry is asked for straight away: whichever Billow sees
    first, the retry is refused or finds the link paid, and Stripe holds one payment."""
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "racer", card=DECLINED, wait_for=wait_for)
    invoice = one_off(stripe_org, "racer")
    wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    url = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")[1][
        "invoice_payment_details"
    ]["payment_url"]
    assert browse(url, {"card": VISA})[0] == 303
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status in (200, 405), body
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()
    (payment,) = succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))
    assert refunds_of(stripe_org, payment["id"]) == []
    assert get_invoice(stripe_org, invoice["lago_id"])["total_paid_amount_cents"] == 2000


def test_a_second_payment_of_a_paid_invoice_is_refunded(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """A link's payment and a charge crossed: Stripe took the money twice, so Billow gives
    the second payment back and the invoice is paid once."""
    with_fee_add_on(stripe_org, 3300)
    cus = stripe_customer(stripe_org, "twice", wait_for=wait_for)
    invoice = one_off(stripe_org, "twice")
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    (charge,) = payment_intents(stripe_org, cus)

    card = stripe_org.stripe.v1.customers.retrieve(cus).invoice_settings.default_payment_method
    second = stripe_org.stripe.v1.payment_intents.create(
        params={
            "amount": 3300,
            "currency": "eur",
            "customer": cus,
            "payment_method": card,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": {
                **intent_object("", paid, stripe_org.id, attempt=None)["metadata"],
                "payment_type": "one-time",
            },
        }
    )
    assert second.status == "succeeded"
    refunds = wait_for(lambda: refunds_of(stripe_org, second.id))
    assert [(r["amount"], r["status"]) for r in refunds] == [(3300, "succeeded")]
    local_billow.wait_idle()
    assert len(refunds_of(stripe_org, second.id)) == 1
    assert refunds_of(stripe_org, charge["id"]) == []
    after = get_invoice(stripe_org, invoice["lago_id"])
    assert (after["payment_status"], after["total_paid_amount_cents"]) == ("succeeded", 3300)
    assert len(webhooks(subscribed, "invoice.payment_status_updated")) == 1


# 5. Retries, voiding, listing --------------------------------------------------------------


def test_retry_payment_is_a_new_attempt_with_a_new_payment_intent(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "retry", card=DECLINED, wait_for=wait_for)
    invoice = one_off(stripe_org, "retry")
    wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    local_billow.wait_idle()
    (first,) = payment_intents(stripe_org, cus)

    fixed = attach_card(stripe_org.stripe, cus, default=True)
    wait_for(
        lambda: (
            any(
                m["is_default"] and m["provider_method_id"] == fixed
                for m in payment_methods(stripe_org, "retry")
            )
            or None
        )
    )
    # Two retries at once (a double click reaching two API Lambdas): one attempt, the
    # other is told it is under way. Local mode runs one API invocation at a time, so the
    # race is played on the use case itself, from two threads.
    answers: list[tuple[int, Any]] = []
    barrier = threading.Barrier(2)

    def click() -> None:
        barrier.wait()
        try:
            retried = attempts.request_attempt(dependencies(), stripe_org.id, invoice["lago_id"])
            answers.append((200, retried))
        except ValidationFailed as refused:
            answers.append((405, refused.code))

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    assert sorted(status for status, _ in answers) == [200, 405], answers
    assert [code for status, code in answers if status == 405] == [
        "payment_processor_is_currently_handling_payment"
    ]
    status, body = stripe_org.api.get(f"/invoices/{invoice['lago_id']}")
    assert body["invoice"]["payment_status"] in {"pending", "succeeded"}
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()

    intents = {pi["id"]: pi for pi in payment_intents(stripe_org, cus)}
    assert len(intents) == 2
    (second,) = [pi for pid, pi in intents.items() if pid != first["id"]]
    assert second["status"] == "succeeded" and second["metadata"]["payment_attempt"] == "2"
    assert first["metadata"]["payment_attempt"] == "1"
    key = f"invoice-payment-{invoice['lago_id']}"
    assert idempotency_keys(stripe_org, "payment_intent.succeeded", second["id"]) == [f"{key}-2"]
    assert idempotency_keys(stripe_org, "payment_intent.payment_failed", first["id"]) == [
        f"{key}-1"
    ]
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert (status, body["code"]) == (405, "invalid_status"), body
    assert stripe_org.api.post(f"/invoices/{uuid.uuid4()}/retry_payment")[0] == 404
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["failed", "succeeded"]


def test_a_voided_invoice_is_never_charged_afterwards(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    cus = stripe_customer(stripe_org, "voided", card=DECLINED, wait_for=wait_for)
    invoice = one_off(stripe_org, "voided")
    failed = wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    local_billow.wait_idle()  # dunning has planned its retry

    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/void")
    assert status == 200, body
    assert body["invoice"]["status"] == "voided" and body["invoice"]["voided_at"]
    assert stripe_org.api.post(f"/invoices/{invoice['lago_id']}/void")[1] == {
        "status": 405,
        "error": "Method Not Allowed",
        "code": "not_voidable",
    }
    assert stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")[1]["code"] == (
        "invalid_status"
    )
    assert stripe_org.api.post(f"/invoices/{uuid.uuid4()}/void")[0] == 404

    attach_card(stripe_org.stripe, cus, default=True)  # a working card arrives
    # The failure planned a retry three days later: it comes due, and charges nothing.
    failed_at = datetime.fromisoformat(failed["updated_at"])
    local_billow.fire_schedule("dunning-run", failed_at + timedelta(days=3, minutes=1))
    local_billow.wait_idle()
    assert len(payment_intents(stripe_org, cus)) == 1
    assert get_invoice(stripe_org, invoice["lago_id"])["status"] == "voided"
    assert [w["invoice"]["lago_id"] for w in webhooks(subscribed, "invoice.voided")] == [
        invoice["lago_id"]
    ]

    # A payment through the invoice's link, submitted just before the invoice was voided,
    # lands afterwards: it is given back, and the invoice stays voided and unpaid.
    card = stripe_org.stripe.v1.customers.retrieve(cus).invoice_settings.default_payment_method
    in_flight = stripe_org.stripe.v1.payment_intents.create(
        params={
            "amount": failed["total_amount_cents"],
            "currency": "eur",
            "customer": cus,
            "payment_method": card,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "metadata": {
                **intent_object("", failed, stripe_org.id, attempt=None)["metadata"],
                "payment_type": "one-time",
            },
        }
    )
    refunds = wait_for(lambda: refunds_of(stripe_org, in_flight.id))
    assert [r["amount"] for r in refunds] == [failed["total_amount_cents"]]
    local_billow.wait_idle()
    after = get_invoice(stripe_org, invoice["lago_id"])
    assert (after["status"], after["payment_status"], after["total_paid_amount_cents"]) == (
        "voided",
        "failed",
        0,
    )

    free = one_off(stripe_org, "voided", [{"add_on_code": "fee", "unit_amount_cents": 0}])
    status, body = stripe_org.api.post(f"/invoices/{free['lago_id']}/void")
    assert (status, body["code"]) == (405, "not_voidable"), body  # paid


def test_listing_filters_and_paginates_invoices(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org)
    stripe_customer(stripe_org, "payer", wait_for=wait_for)
    assert (
        stripe_org.api.post("/customers", json={"customer": {"external_id": "offline"}})[0] == 200
    )
    charged = [one_off(stripe_org, "payer") for _ in range(2)]
    skipped = one_off(stripe_org, "payer", skip_psp=True)
    offline = [one_off(stripe_org, "offline") for _ in range(2)]
    for invoice in charged:
        wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert stripe_org.api.post(f"/invoices/{offline[0]['lago_id']}/void")[0] == 200

    def ids(query: str) -> list[str]:
        status, body = stripe_org.api.get(f"/invoices?{query}")
        assert status == 200, body
        return [invoice["lago_id"] for invoice in body["invoices"]]

    everything = ids("")
    assert len(everything) == 5
    assert set(ids("external_customer_id=payer")) == {i["lago_id"] for i in [*charged, skipped]}
    assert set(ids("payment_status=succeeded")) == {i["lago_id"] for i in charged}
    assert set(ids("external_customer_id=payer&payment_status=pending")) == {skipped["lago_id"]}
    assert ids("status=voided") == [offline[0]["lago_id"]]
    assert set(ids("status=finalized")) == set(everything) - {offline[0]["lago_id"]}
    assert ids("external_customer_id=offline&status=finalized") == [offline[1]["lago_id"]]
    assert ids("payment_status=failed") == []
    # The spellings of Lago's OpenAPI document (and of its JavaScript client):
    assert ids("statuses[]=voided") == [offline[0]["lago_id"]]
    assert set(ids("payment_statuses[]=succeeded&payment_statuses[]=failed")) == {
        i["lago_id"] for i in charged
    }
    customer_view = stripe_org.api.get("/customers/payer/invoices?payment_status=succeeded")[1]
    assert {i["lago_id"] for i in customer_view["invoices"]} == {i["lago_id"] for i in charged}

    pages = [stripe_org.api.get(f"/invoices?per_page=2&page={page}")[1] for page in (1, 2, 3)]
    assert [[i["lago_id"] for i in page["invoices"]] for page in pages] == [
        everything[0:2],
        everything[2:4],
        everything[4:5],
    ]
    assert pages[0]["meta"] == {
        "current_page": 1,
        "next_page": 2,
        "prev_page": None,
        "total_pages": 3,
        "total_count": 5,
    }
    assert pages[2]["meta"]["next_page"] is None and pages[2]["meta"]["prev_page"] == 2
    # Lago answers an unknown customer with an empty list, and ignores an unknown status.
    status, body = stripe_org.api.get("/invoices?external_customer_id=nobody")
    assert (status, body["invoices"], body["meta"]["total_count"]) == (200, [], 0)
    assert ids("payment_status=paid&per_page=null") == everything
    status, body = stripe_org.api.get("/customers/nobody/invoices")
    assert (status, body["code"]) == (404, "customer_not_found")

    other = another_stripe_org(local_billow)
    assert other.api.get(f"/invoices/{charged[0]['lago_id']}")[0] == 404
    assert other.api.get("/invoices")[1]["invoices"] == []
    for action in ("void", "retry_payment", "payment_url"):
        assert other.api.post(f"/invoices/{skipped['lago_id']}/{action}")[0] == 404
    assert get_invoice(stripe_org, skipped["lago_id"])["status"] == "finalized"


# 6. 3-D Secure --------------------------------------------------------------------------------


def test_a_card_needing_3d_secure_fails_and_offers_a_working_link(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    with_fee_add_on(stripe_org, 1800)
    cus = stripe_customer(stripe_org, "secure", card=THREE_D_SECURE, wait_for=wait_for)
    invoice = one_off(stripe_org, "secure")
    wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)

    (failure,) = wait_for(lambda: webhooks(subscribed, "invoice.payment_failure"))
    error = failure["payment_provider_invoice_payment_error"]
    assert error["lago_invoice_id"] == invoice["lago_id"]
    assert error["provider_error"]["error_code"] == "authentication_required"
    assert error["provider_customer_id"] == cus
    (action,) = wait_for(lambda: webhooks(subscribed, "payment.requires_action"))
    payment = action["payment"]
    assert payment["invoice_ids"] == [invoice["lago_id"]]
    assert (payment["amount_cents"], payment["amount_currency"]) == (1800, "EUR")
    assert payment["status"] == "requires_action"
    (attempt,) = payment_intents(stripe_org, cus)
    assert payment["provider_payment_id"] == attempt["id"]
    assert payment["next_action"]["type"] == "redirect_to_url"
    url = payment["next_action"]["redirect_to_url"]["url"]

    status, _, page = browse(url)
    assert status == 200 and "Pay 18.00 EUR" in page
    status, _, page = browse(url, {"card": THREE_D_SECURE})
    assert status == 200 and "Authenticate" in page
    status, _, _ = browse(url + "/authenticate", {"outcome": "success"})
    assert status == 303
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 1800
    local_billow.wait_idle()
    assert len(succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))) == 1
    assert len(webhooks(subscribed, "invoice.payment_failure")) == 1


def test_an_automatic_retry_closes_the_authentication_link(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """The 3-D Secure link is the invoice's open payment link: once a retry with another
    card pays the invoice, nobody can pay it a second time through that link."""
    with_fee_add_on(stripe_org, 1800)
    cus = stripe_customer(stripe_org, "switch", card=THREE_D_SECURE, wait_for=wait_for)
    invoice = one_off(stripe_org, "switch")
    wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    (action,) = wait_for(lambda: webhooks(subscribed, "payment.requires_action"))
    url = action["payment"]["next_action"]["redirect_to_url"]["url"]

    fixed = attach_card(stripe_org.stripe, cus, default=True)
    wait_for(
        lambda: (
            any(
                m["is_default"] and m["provider_method_id"] == fixed
                for m in payment_methods(stripe_org, "switch")
            )
            or None
        )
    )
    assert stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")[0] == 200
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    status, _, page = browse(url, {"card": VISA})
    assert status == 410 and "expired" in page
    local_billow.wait_idle()
    assert len(succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))) == 1


def test_an_authentication_failure_reported_by_stripe_first_still_offers_a_link(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Stripe's ``payment_intent.payment_failed`` (3-D Secure needed) is processed before the
    worker records its own answer: the failure still comes with a working link."""
    with_fee_add_on(stripe_org, 1800)
    stripe_customer(stripe_org, "first", card=None)
    invoice = one_off(stripe_org, "first")
    local_billow.wait_idle()
    intent = intent_object(
        "pi_auth_" + uuid.uuid4().hex[:12],
        invoice,
        stripe_org.id,
        status="requires_payment_method",
        error_code="authentication_required",
    )
    send_stripe_event(
        local_billow, stripe_org, "evt_auth_first", "payment_intent.payment_failed", intent
    )
    wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    (failure,) = wait_for(lambda: webhooks(subscribed, "invoice.payment_failure"))
    assert failure["payment_provider_invoice_payment_error"]["provider_error"]["error_code"] == (
        "authentication_required"
    )
    (action,) = wait_for(lambda: webhooks(subscribed, "payment.requires_action"))
    assert action["payment"]["provider_payment_id"] == intent["id"]
    url = action["payment"]["next_action"]["redirect_to_url"]["url"]
    assert browse(url, {"card": VISA})[0] == 303
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)


# 7. Stripe's rate limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [{"code": "lock_timeout"}, {"code": "rate_limit", "should_retry": "true"}],
    ids=["lock_timeout", "rate_limit_should_retry"],
)
def test_a_rate_limited_charge_is_retried_with_its_key_and_made_once(
    local_billow: Any,
    stripe_org: StripeOrg,
    wait_for: Any,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, str],
) -> None:
    # The runtime runs Billow's handlers in this process: the SDK's backoff is shortened
    # for them too (Billow's own code is untouched).
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.01)
    with_fee_add_on(stripe_org, 2200)
    cus = stripe_customer(stripe_org, "busy", wait_for=wait_for)
    key = {"api_key": stripe_org.secret_key}
    stripe_config(local_billow, "DELETE", "/_config/requests", key)
    stripe_config(
        local_billow,
        "POST",
        "/_config/faults",
        {**key, "path_prefix": "/v1/payment_intents", "count": "2", **fault},
    )
    invoice = one_off(stripe_org, "busy")
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()
    counts = stripe_config(local_billow, "GET", "/_config/requests", key)["by_endpoint"]
    assert counts["POST /v1/payment_intents"] == 3
    (charge,) = payment_intents(stripe_org, cus)
    assert charge["status"] == "succeeded" and charge["amount"] == 2200
    assert idempotency_keys(stripe_org, "payment_intent.succeeded", charge["id"]) == [
        f"invoice-payment-{invoice['lago_id']}-1"
    ]


# Lago's contract -------------------------------------------------------------------------------


def _check(body: Any, pointer: str) -> None:
    validator = Draft202012Validator({"$ref": f"lago#{pointer}"}, registry=_registry())
    errors = [
        error
        for error in validator.iter_errors(body)
        if not (error.instance is None and error.path and error.path[-1] in NULL_UNTIL_GENERATED)
    ]
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def check(body: Any, schema: str) -> None:
    _check(body, f"/components/schemas/{schema}")


def check_webhook(body: Any, name: str) -> None:
    _check(body, f"/webhooks/{name}/post/requestBody/content/application~1json/schema")


@needs_contract
def test_invoice_bodies_and_webhooks_match_lago(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_tax(stripe_org, "vat", "20")
    create_add_on(stripe_org, "fee", 1500, tax_codes=["vat"])
    create_plan(stripe_org, "contract", 2900, pay_in_advance=True)
    stripe_customer(stripe_org, "payer", wait_for=wait_for)
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "payer",
                "plan_code": "contract",
                "external_id": "contract-sub",
            }
        },
    )
    assert status == 200, body
    status, created = stripe_org.api.post(
        "/invoices",
        json={"invoice": {"external_customer_id": "payer", "fees": [{"add_on_code": "fee"}]}},
    )
    assert status == 200, created
    check(created, "Invoice")
    one_off_id = created["invoice"]["lago_id"]
    wait_payment_status(stripe_org, one_off_id, "succeeded", wait_for)
    check(stripe_org.api.get(f"/invoices/{one_off_id}")[1], "Invoice")

    stripe_customer(stripe_org, "secure", card=THREE_D_SECURE, wait_for=wait_for)
    failing = one_off(stripe_org, "secure")
    wait_payment_status(stripe_org, failing["lago_id"], "failed", wait_for)
    status, link = stripe_org.api.post(f"/invoices/{failing['lago_id']}/payment_url")
    assert status == 200, link
    check(link, "InvoicePaymentUrl")
    status, voided = stripe_org.api.post(f"/invoices/{failing['lago_id']}/void")
    assert status == 200, voided
    check(voided, "Invoice")
    check(stripe_org.api.get("/invoices")[1], "InvoicesPaginated")
    check(stripe_org.api.get("/customers/payer/invoices")[1], "InvoicesPaginated")

    wait_for(lambda: len(invoices_of(stripe_org, "payer")) == 2 or None)
    local_billow.wait_idle()
    for webhook_type, name in (
        ("invoice.created", "invoice_created"),
        ("invoice.one_off_created", "invoice_one_off_created"),
        ("invoice.payment_status_updated", "invoice_payment_status_updated"),
        ("invoice.payment_failure", "invoice_payment_failure"),
        ("payment.requires_action", "payment_requires_action"),
        ("invoice.voided", "invoice_voided"),
    ):
        sent = webhooks(subscribed, webhook_type)
        assert sent, webhook_type
        for body in sent:
            check_webhook(body, name)
    # Later tests' billing runs bill every live subscription: this one ends here.
    assert stripe_org.api.delete("/subscriptions/contract-sub")[0] == 200
    local_billow.wait_idle()


def test_an_invoice_issued_before_the_customer_reached_stripe_is_charged_once_linked(
    stripe_org: StripeOrg, wait_for: Any
) -> None:
    """No Stripe customer yet: the invoice waits. Linking the customer to Stripe customer
    with a default card brings the card in, and the waiting invoice is charged."""
    with_fee_add_on(stripe_org)
    stripe_org.api.post("/customers", json={"customer": {"external_id": "late", "currency": "EUR"}})
    invoice = one_off(stripe_org, "late")
    assert invoice["payment_status"] == "pending"
    existing = stripe_org.stripe.v1.customers.create(params={"name": "late"})
    attach_card(stripe_org.stripe, existing.id, default=True)
    status, body = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "late",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "provider_customer_id": existing.id,
                    "sync_with_provider": False,
                },
            }
        },
    )
    assert status == 200, body
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert len(charges_of(stripe_org, existing.id, invoice["lago_id"])) == 1
