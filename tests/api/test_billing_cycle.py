"""The billing cycle end to end: subscriptions (with pre-authorization), scheduled runs,
Stripe charges, Stripe's webhooks, the payment_failure fan-out and dunning retries."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from billow.domain.clock import iso, parse_iso
from tests.api.billing_helpers import (
    DECLINED,
    THREE_D_SECURE,
    VISA,
    create_plan,
    invoices_of,
    next_month_start,
    payment_intents,
    stripe_customer,
    wait_payment_status,
    webhooks,
)
from tests.api.conftest import StripeOrg, attach_card
from tests.conftest import http_json


def test_subscription_with_pre_authorization_is_billed_in_advance_and_charged_once(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(stripe_org, "pro", 4900, pay_in_advance=True)
    cus = stripe_customer(stripe_org, "acme", wait_for=wait_for)

    status, body = stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "acme",
                "plan_code": "pro",
                "external_id": "acme-pro",
                "billing_time": "anniversary",
            },
            "authorization": {"amount_cents": 100, "amount_currency": "EUR"},
        },
    )
    assert status == 200, body
    subscription = body["subscription"]
    assert subscription["status"] == "active"
    assert subscription["authorization"]["status"] == "requires_capture"
    assert subscription["authorization"]["amount"] == 100
    hold = stripe_org.stripe.v1.payment_intents.retrieve(subscription["authorization"]["id"])
    assert hold.status == "canceled"  # released at once: no hold left behind

    invoice = wait_for(lambda: (invoices_of(stripe_org, "acme") or [None])[0])
    assert invoice["invoice_type"] == "subscription"
    assert invoice["fees_amount_cents"] == 4900  # anniversary: a whole first period
    assert invoice["number"].endswith("-001")
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 4900
    charges = [pi for pi in payment_intents(stripe_org, cus) if pi["status"] == "succeeded"]
    assert len(charges) == 1
    assert charges[0]["amount"] == 4900
    assert charges[0]["metadata"]["lago_invoice_id"] == invoice["lago_id"]
    assert charges[0]["metadata"]["lago_organization_id"] == stripe_org.id
    local_billow.wait_idle()
    assert len(webhooks(subscribed, "subscription.started")) == 1
    assert len(webhooks(subscribed, "invoice.created")) == 1
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["succeeded"]


def test_pre_authorization_refusals_create_nothing(stripe_org: StripeOrg, wait_for: Any) -> None:
    create_plan(stripe_org, "basic", 1000)
    for external_id, card, code in (
        ("declined", DECLINED, "card_declined"),
        ("secure", THREE_D_SECURE, "authentication_required"),
    ):
        cus = stripe_customer(stripe_org, external_id, card=card, wait_for=wait_for)
        status, body = stripe_org.api.post(
            "/subscriptions",
            json={
                "subscription": {
                    "external_customer_id": external_id,
                    "plan_code": "basic",
                    "external_id": f"{external_id}-sub",
                },
                "authorization": {"amount_cents": 100, "amount_currency": "EUR"},
            },
        )
        assert status == 422, body
        assert body["code"] == code
        assert body["error_details"]["authorization"] == [code]
        assert body["error_details"]["provider_error"]["message"]
        assert stripe_org.api.get(f"/subscriptions/{external_id}-sub")[0] == 404
        assert all(pi["status"] != "requires_capture" for pi in payment_intents(stripe_org, cus))

    stripe_customer(stripe_org, "no-card", card=None)
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {"external_customer_id": "no-card", "plan_code": "basic"},
            "authorization": {"amount_cents": 100, "amount_currency": "EUR"},
        },
    )
    assert status == 422 and body["code"] == "customer_has_no_payment_method"
    stripe_org.api.post("/customers", json={"customer": {"external_id": "offline"}})
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {"external_customer_id": "offline", "plan_code": "basic"},
            "authorization": {"amount_cents": 100, "amount_currency": "EUR"},
        },
    )
    assert status == 422 and body["error_details"]["authorization"] == [
        "customer_not_linked_to_stripe"
    ]
    assert (
        stripe_org.api.get("/subscriptions?external_customer_id=offline")[1]["subscriptions"] == []
    )


def test_overlapping_billing_runs_issue_one_invoice_per_period(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    create_plan(stripe_org, "arrears", 3100)
    cus = stripe_customer(stripe_org, "overlap", wait_for=wait_for)
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={"subscription": {"external_customer_id": "overlap", "plan_code": "arrears"}},
    )
    assert status == 200, body
    assert invoices_of(stripe_org, "overlap") == []  # in arrears: nothing owed yet

    boundary = next_month_start()
    runs = [
        threading.Thread(
            target=local_billow.fire_schedule, args=("billing-run", boundary + timedelta(hours=1))
        )
        for _ in range(3)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    local_billow.wait_idle()
    local_billow.fire_schedule("billing-run", boundary + timedelta(hours=2))
    local_billow.wait_idle()

    issued = invoices_of(stripe_org, "overlap")
    assert len(issued) == 1
    assert 0 < issued[0]["fees_amount_cents"] <= 3100  # the prorated first month
    wait_for(lambda: invoices_of(stripe_org, "overlap")[0]["payment_status"] == "succeeded" or None)
    assert len(payment_intents(stripe_org, cus)) == 1
    fee = issued[0]["fees"][0]
    assert fee["to_date"] == iso(boundary - timedelta(seconds=1))
    assert fee["item"]["type"] == "subscription"


def test_a_crash_after_stripe_charged_never_charges_twice(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """The worker called Stripe and died before recording the answer: its retry reaches the
    same PaymentIntent through the idempotency key, and Stripe holds one charge.

    The invoice waits for a payment method; the test then plays the crashed attempt's
    Stripe call itself, with the exact request Billow makes, before the card arrives."""
    create_plan(stripe_org, "crashy", 2500, pay_in_advance=True)
    cus = stripe_customer(stripe_org, "crash", card=None)
    stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "crash",
                "plan_code": "crashy",
                "billing_time": "anniversary",
            }
        },
    )
    invoice = wait_for(lambda: (invoices_of(stripe_org, "crash") or [None])[0])
    assert invoice["payment_status"] == "pending"
    card = stripe_org.stripe.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": VISA, "exp_month": 12, "exp_year": 2035, "cvc": "123"},
        }
    )
    stripe_org.stripe.v1.payment_methods.attach(card.id, params={"customer": cus})
    stripe_org.stripe.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "customer": cus,
            "payment_method": card.id,
            "payment_method_types": ["card"],
            "confirm": True,
            "off_session": True,
            "error_on_requires_action": True,
            "description": f"Invoice {invoice['number']}",
            "metadata": {
                "lago_invoice_id": invoice["lago_id"],
                "lago_customer_id": invoice["customer"]["lago_id"],
                "lago_organization_id": stripe_org.id,
                "invoice_number": invoice["number"],
                "invoice_type": "subscription",
                "invoice_issuing_date": invoice["issuing_date"],
                "payment_attempt": "2",
            },
        },
        options={"idempotency_key": f"invoice-payment-{invoice['lago_id']}-2"},
    )
    # The card becomes the default: Billow charges the waiting invoice (attempt 2).
    stripe_org.stripe.v1.customers.update(
        cus, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    local_billow.wait_idle()
    assert len(payment_intents(stripe_org, cus)) == 1


def test_declined_charge_fans_out_and_dunning_retries_until_paid(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(stripe_org, "dunned", 1500, pay_in_advance=True)
    cus = stripe_customer(stripe_org, "debtor", card=DECLINED, wait_for=wait_for)
    stripe_org.api.post(
        "/subscriptions",
        json={"subscription": {"external_customer_id": "debtor", "plan_code": "dunned"}},
    )
    invoice = wait_for(
        lambda: next(
            (i for i in invoices_of(stripe_org, "debtor") if i["payment_status"] == "failed"),
            None,
        )
    )
    local_billow.wait_idle()
    failures = webhooks(subscribed, "invoice.payment_failure")
    assert len(failures) == 1
    failure = failures[0]["payment_provider_invoice_payment_error"]
    assert failure["lago_invoice_id"] == invoice["lago_id"]
    assert failure["provider_error"]["error_code"] == "card_declined"
    assert failure["provider_customer_id"] == cus
    alerts = wait_for(lambda: local_billow.topic_messages("finance-alerts") or None)
    assert any(invoice["lago_id"] in str(alert) for alert in alerts)

    failed_at = invoice["updated_at"]

    # Two days later nothing is due; on day three the first retry is made, and fails again.
    local_billow.fire_schedule("dunning-run", parse_iso(failed_at) + timedelta(days=2))
    local_billow.wait_idle()
    assert len(payment_intents(stripe_org, cus)) == 1
    local_billow.fire_schedule("dunning-run", parse_iso(failed_at) + timedelta(days=3, minutes=1))
    local_billow.wait_idle()
    wait_for(lambda: len(webhooks(subscribed, "invoice.payment_failure")) == 2 or None)
    assert len(payment_intents(stripe_org, cus)) == 2

    # The customer fixes their card; the next retry (5 days after that failure) succeeds.
    fixed = attach_card(stripe_org.stripe, cus, default=True)
    wait_for(
        lambda: (
            any(
                m["is_default"] and m["provider_method_id"] == fixed
                for m in stripe_org.api.get("/customers/debtor/payment_methods")[1][
                    "payment_methods"
                ]
            )
            or None
        )
    )
    second_failure = stripe_org.api.get(f"/invoices/{invoice['lago_id']}")[1]["invoice"]
    local_billow.fire_schedule(
        "dunning-run", parse_iso(second_failure["updated_at"]) + timedelta(days=5, minutes=1)
    )
    local_billow.wait_idle()
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == invoice["total_amount_cents"] > 0
    local_billow.fire_schedule(
        "dunning-run", parse_iso(second_failure["updated_at"]) + timedelta(days=30)
    )
    local_billow.wait_idle()
    assert len([pi for pi in payment_intents(stripe_org, cus) if pi["status"] == "succeeded"]) == 1


def test_the_organizations_retry_schedule_drives_dunning(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    status, body = stripe_org.api.put(
        "/organizations",
        json={
            "organization": {
                "timezone": "Europe/Paris",
                "billing_configuration": {"payment_retry_delays_days": [1]},
            }
        },
    )
    assert status == 200, body
    assert body["organization"]["billing_configuration"]["payment_retry_delays_days"] == [1]
    assert (
        stripe_org.api.put(
            "/organizations",
            json={"organization": {"billing_configuration": {"payment_retry_delays_days": [0]}}},
        )[0]
        == 422
    )

    create_plan(stripe_org, "one-retry", 2000, pay_in_advance=True)
    cus = stripe_customer(stripe_org, "once", card=DECLINED, wait_for=wait_for)
    stripe_org.api.post(
        "/subscriptions",
        json={"subscription": {"external_customer_id": "once", "plan_code": "one-retry"}},
    )
    invoice = wait_for(
        lambda: next(
            (i for i in invoices_of(stripe_org, "once") if i["payment_status"] == "failed"), None
        )
    )
    local_billow.wait_idle()

    def fire_dunning(at: Any) -> None:
        status, body = http_json(
            "POST",
            f"{local_billow.api_url}/_local/schedules/dunning-run/fire",
            {"time": iso(at)},
        )
        assert status == 200, body
        local_billow.wait_idle()

    failed_at = parse_iso(invoice["updated_at"])
    fire_dunning(failed_at + timedelta(days=1, minutes=1))  # the one retry, a day later
    retried = wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    assert len(payment_intents(stripe_org, cus)) == 2
    fire_dunning(parse_iso(retried["updated_at"]) + timedelta(days=30))  # no retries left
    assert len(payment_intents(stripe_org, cus)) == 2
