"""One charge per invoice, whatever the interleaving: attempts in flight hold off payment
links and retries, payments that do not pay the invoice are never applied, and Stripe's
lasting refusals fail an attempt visibly instead of being retried forever."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.billing_helpers import DECLINED, VISA, stripe_customer, webhooks
from tests.api.conftest import StripeOrg, stripe_client
from tests.api.test_payments import (
    browse,
    charges_of,
    check_webhook,
    dead_lettered,
    get_invoice,
    idempotency_keys,
    inject_fault,
    intent_object,
    needs_contract,
    one_off,
    refunds_of,
    send_stripe_event,
    stripe_config,
    succeeded,
    wait_payment_status,
    with_fee_add_on,
)
from tests.api.test_stripe_webhooks import stored_event

IN_FLIGHT = "payment_processor_is_currently_handling_payment"
"""Lago's 405 code for a retry (and Billow's for a payment link) while a payment is under way."""


def later(hours: int = 2) -> datetime:
    """A sweep "now" past the hour Stripe may stay silent about an attempt."""
    return datetime.now(UTC) + timedelta(hours=hours)


def repairs_of(result: dict[str, Any], organization_id: str) -> dict[str, Any] | None:
    """One organization's entry in the reconciliation's report (None: nothing to repair)."""
    found = [r for r in result["organizations"] if r["organization_id"] == organization_id]
    return found[0] if found else None


def requests_made(local_billow: Any, org: StripeOrg) -> dict[str, int]:
    counts = stripe_config(local_billow, "GET", "/_config/requests", {"api_key": org.secret_key})
    return dict(counts["by_endpoint"])


def drop_deliveries(local_billow: Any, org: StripeOrg, count: int, event_type: str) -> None:
    """Stripe will not deliver the account's next ``count`` events of ``event_type``."""
    stripe_config(
        local_billow,
        "POST",
        "/_config/drop_deliveries",
        {"api_key": org.secret_key, "count": str(count), "event_type": event_type},
    )


# -- an attempt in flight --------------------------------------------------------------------


def test_an_attempt_in_flight_holds_off_links_and_retries_and_is_never_lost(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any, quick_sdk_retries: None
) -> None:
    """Stripe fails every charge request: the attempt stays in flight, its message ends in
    the DLQ. Meanwhile no payment link and no second attempt may start (the first could be
    charging the card). The hourly reconciliation finds nothing in Stripe for the attempt
    and asks for it again under its own key: one charge."""
    with_fee_add_on(stripe_org, 2600)
    cus = stripe_customer(stripe_org, "inflight", wait_for=wait_for)
    inject_fault(local_billow, stripe_org, "/v1/payment_intents", 1000)
    invoice = one_off(stripe_org, "inflight")
    stripe_config(local_billow, "DELETE", "/_config/requests", {"api_key": stripe_org.secret_key})

    for action in ("payment_url", "retry_payment"):
        status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/{action}")
        assert (status, body["code"]) == (405, IN_FLIGHT), (action, body)
    assert "POST /v1/checkout/sessions" not in requests_made(local_billow, stripe_org)

    wait_for(lambda: dead_lettered(local_billow, "payments", invoice["lago_id"]), timeout=60)
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"
    inject_fault(local_billow, stripe_org, "/v1/payment_intents", 0)

    quiet = local_billow.fire_schedule("stripe-events-sweep", later())
    assert repairs_of(quiet, stripe_org.id)["attempts_redriven"] == 1  # type: ignore[index]
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 2600
    local_billow.wait_idle()
    (charge,) = charges_of(stripe_org, cus, invoice["lago_id"])
    assert charge["status"] == "succeeded" and charge["metadata"]["payment_attempt"] == "1"
    assert idempotency_keys(stripe_org, "payment_intent.succeeded", charge["id"]) == [
        f"invoice-payment-{invoice['lago_id']}-1"
    ]
    again = local_billow.fire_schedule("stripe-events-sweep", later())
    assert repairs_of(again, stripe_org.id) is None, again


def pay_a_failed_invoice_by_link_unheard(
    local_billow: Any, org: StripeOrg, external_id: str, amount_cents: int, wait_for: Any
) -> tuple[str, dict[str, Any]]:
    """A declined charge, then the customer pays through the invoice's payment link while
    Stripe's ``payment_intent.succeeded`` never reaches Billow: the invoice still looks
    failed. Returns the Stripe customer and the invoice."""
    with_fee_add_on(org, amount_cents)
    cus = stripe_customer(org, external_id, card=DECLINED, wait_for=wait_for)
    invoice = one_off(org, external_id)
    wait_payment_status(org, invoice["lago_id"], "failed", wait_for)
    url = org.api.post(f"/invoices/{invoice['lago_id']}/payment_url")[1]["invoice_payment_details"][
        "payment_url"
    ]
    drop_deliveries(local_billow, org, 1, "payment_intent.succeeded")
    assert browse(url, {"card": VISA})[0] == 303
    local_billow.wait_idle()
    assert get_invoice(org, invoice["lago_id"])["payment_status"] == "failed"
    return cus, invoice


def test_a_link_paid_before_the_charge_closes_it_settles_the_invoice_and_nothing_is_charged(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """The customer pays through the link; Stripe's event has not reached Billow (here it
    never will). A retry's charge first closes the link, finds it paid, and settles the
    invoice from that payment instead of charging the card a second time."""
    cus, invoice = pay_a_failed_invoice_by_link_unheard(
        local_billow, stripe_org, "linkfirst", 2800, wait_for
    )

    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status == 200, body
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 2800
    local_billow.wait_idle()
    intents = charges_of(stripe_org, cus, invoice["lago_id"])
    assert sorted(
        (pi["status"], pi["metadata"].get("payment_attempt", "link")) for pi in intents
    ) == [("requires_payment_method", "1"), ("succeeded", "link")]
    (link_payment,) = succeeded(intents)
    assert refunds_of(stripe_org, link_payment["id"]) == []
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["failed", "succeeded"]


def test_a_charge_refused_for_good_fails_at_once_instead_of_retrying(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """The customer was deleted in Stripe's dashboard: Stripe will refuse every charge.
    The attempt fails with Stripe's error, announced as any failure, and is not retried."""
    with_fee_add_on(stripe_org, 900)
    cus = stripe_customer(stripe_org, "gone", wait_for=wait_for)
    stripe_org.stripe.v1.customers.delete(cus)
    invoice = one_off(stripe_org, "gone")
    failed = wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    local_billow.wait_idle()

    (failure,) = webhooks(subscribed, "invoice.payment_failure")
    error = failure["payment_provider_invoice_payment_error"]
    assert error["lago_invoice_id"] == invoice["lago_id"]
    assert error["provider_error"]["error_code"] == "resource_missing"
    assert cus in error["provider_error"]["message"]
    assert webhooks(subscribed, "payment_provider.error") == []  # the key itself is fine
    assert failed["total_paid_amount_cents"] == 0
    assert not dead_lettered(local_billow, "payments", invoice["lago_id"])
    assert requests_made(local_billow, stripe_org).get("POST /v1/payment_intents") == 1


# -- a payment must match what it pays -----------------------------------------------------


def _forged(intent: dict[str, Any], case: str) -> dict[str, Any]:
    if case == "too_little":
        return {**intent, "amount": 50, "amount_received": 50}
    if case == "other_currency":
        return {**intent, "currency": "usd"}
    if case == "other_customer":
        return {**intent, "customer": "cus_somebody_else"}
    if case == "attempt_never_made":
        return {**intent, "metadata": {**intent["metadata"], "payment_attempt": "7"}}
    assert case == "not_made_by_billow"
    metadata = {k: v for k, v in intent["metadata"].items() if k != "payment_attempt"}
    return {**intent, "metadata": metadata}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("too_little", "amount_mismatch"),
        ("other_currency", "currency_mismatch"),
        ("other_customer", "customer_mismatch"),
        ("attempt_never_made", "unknown_attempt"),
        ("not_made_by_billow", "not_created_by_billow"),
    ],
)
def test_a_payment_that_does_not_pay_the_invoice_is_recorded_and_reported_not_applied(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, case: str, reason: str
) -> None:
    with_fee_add_on(stripe_org, 700)
    stripe_customer(stripe_org, "forged", card=None)
    invoice = one_off(stripe_org, "forged")
    local_billow.wait_idle()
    before = get_invoice(stripe_org, invoice["lago_id"])
    paid = intent_object("pi_forged_" + uuid.uuid4().hex[:10], invoice, stripe_org.id)
    failed = intent_object(
        "pi_forged_fail_" + uuid.uuid4().hex[:10],
        invoice,
        stripe_org.id,
        status="requires_payment_method",
        error_code="card_declined",
    )
    event_ids = [
        f"evt_{case}_paid_{uuid.uuid4().hex[:8]}",
        f"evt_{case}_fail_{uuid.uuid4().hex[:8]}",
    ]
    for event_id, kind, obj in (
        (event_ids[0], "payment_intent.succeeded", _forged(paid, case)),
        (event_ids[1], "payment_intent.payment_failed", _forged(failed, case)),
    ):
        assert send_stripe_event(local_billow, stripe_org, event_id, kind, obj) == "stored"
    local_billow.wait_idle()

    assert get_invoice(stripe_org, invoice["lago_id"]) == before
    # A failure naming no attempt is a payment link's declined try: it changes nothing
    # whoever made it, so it is simply ignored.
    reported = [paid["id"]] if case == "not_made_by_billow" else [paid["id"], failed["id"]]
    outcomes = [stored_event(local_billow, stripe_org.id, event_id) for event_id in event_ids]
    assert [(o["status"], o["processing_error"]) for o in outcomes] == [
        ("rejected", reason) if intent_id in reported else ("ignored", None)
        for intent_id in (paid["id"], failed["id"])
    ]
    assert webhooks(subscribed, "invoice.payment_status_updated") == []
    assert webhooks(subscribed, "invoice.payment_failure") == []
    alerts = [
        message
        for message in local_billow.topic_messages("finance-alerts")
        if invoice["lago_id"] in message["Message"]
    ]
    assert all(alert["Subject"].startswith("Payment not applied") for alert in alerts)
    assert sorted(reported) == sorted(
        line.split(":", 1)[1].split()[0]
        for alert in alerts
        for line in alert["Message"].splitlines()
        if line.startswith("Stripe payment:")
    )


def test_the_right_payment_still_settles_after_a_wrong_one(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """A rejected payment leaves the invoice open to the real one, which settles it once."""
    with_fee_add_on(stripe_org, 700)
    stripe_customer(stripe_org, "right", card=None)
    invoice = one_off(stripe_org, "right")
    local_billow.wait_idle()
    real = intent_object("pi_real_" + uuid.uuid4().hex[:10], invoice, stripe_org.id)
    wrong = {**real, "id": "pi_wrong_" + uuid.uuid4().hex[:8], "amount": 50, "amount_received": 50}
    wrong_event, real_event = (f"evt_{n}_{uuid.uuid4().hex[:8]}" for n in ("wrong", "real"))
    send_stripe_event(local_billow, stripe_org, wrong_event, "payment_intent.succeeded", wrong)
    local_billow.wait_idle()
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"
    send_stripe_event(local_billow, stripe_org, real_event, "payment_intent.succeeded", real)
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert (paid["total_paid_amount_cents"], paid["total_due_amount_cents"]) == (700, 0)
    local_billow.wait_idle()
    assert [
        stored_event(local_billow, stripe_org.id, event_id)["status"]
        for event_id in (wrong_event, real_event)
    ] == ["rejected", "processed"]


def test_unmatched_payment_alert_is_sent_once_per_payment(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    """Stripe retries and resends: the same unmatched PaymentIntent alerts finance once."""
    with_fee_add_on(stripe_org, 700)
    stripe_customer(stripe_org, "once", card=None)
    invoice = one_off(stripe_org, "once")
    local_billow.wait_idle()
    forged = {
        **intent_object("pi_once_" + uuid.uuid4().hex[:10], invoice, stripe_org.id),
        "amount": 1,
        "amount_received": 1,
    }
    for _ in range(2):
        send_stripe_event(
            local_billow,
            stripe_org,
            "evt_once_" + uuid.uuid4().hex[:8],
            "payment_intent.succeeded",
            forged,
        )
    local_billow.wait_idle()
    alerts = [
        m for m in local_billow.topic_messages("finance-alerts") if forged["id"] in m["Message"]
    ]
    assert len(alerts) == 1
    body = json.dumps(alerts[0])
    assert "0.01 EUR" in body and "7.00 EUR" in body
    assert refunds_of(stripe_org, forged["id"]) == []
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"


# -- a broken key ------------------------------------------------------------------------------


@needs_contract
def test_a_revoked_key_fails_the_charge_visibly_and_a_retry_works_once_it_is_fixed(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """With the key revoked, the charge fails at once with Stripe's error (not a pending
    invoice redelivered forever), as ``payment_provider.error`` and
    ``invoice.payment_failure``. Once the organization connects the rolled key, a retry
    is charged."""
    with_fee_add_on(stripe_org, 3100)
    cus = stripe_customer(stripe_org, "revoked", wait_for=wait_for)
    local_billow.wait_idle()  # linking the customer is over before the key breaks
    rolled = stripe_config(
        local_billow, "POST", "/_config/roll_key", {"api_key": stripe_org.secret_key}
    )["api_key"]
    invoice = one_off(stripe_org, "revoked")
    failed = wait_payment_status(stripe_org, invoice["lago_id"], "failed", wait_for)
    local_billow.wait_idle()
    assert failed["total_paid_amount_cents"] == 0
    failures = webhooks(subscribed, "invoice.payment_failure")
    assert [
        f["payment_provider_invoice_payment_error"]["provider_error"]["error_code"]
        for f in failures
    ] == ["api_key_expired"], failures
    (broken,) = webhooks(subscribed, "payment_provider.error")
    assert broken["payment_provider_error"]["payment_provider_code"] == "stripe"
    assert broken["payment_provider_error"]["provider_error"]["error_code"] == "api_key_expired"
    check_webhook(broken, "payment_provider_error")
    assert not dead_lettered(local_billow, "payments", invoice["lago_id"])

    # Retrying with the key still revoked is allowed (nothing is in flight) and fails again.
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status == 200, body
    wait_for(lambda: len(webhooks(subscribed, "invoice.payment_failure")) == 2 or None)

    status, body = stripe_org.api.post(
        "/integrations/stripe", json={"integration": {"secret_key": rolled}}
    )
    assert status == 200, body
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status == 200, body
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 3100
    local_billow.wait_idle()
    fixed = stripe_client(local_billow.stripe_url, rolled)
    intents = [
        intent.to_dict() for intent in fixed.v1.payment_intents.list(params={"customer": cus}).data
    ]
    assert [(pi["status"], pi["metadata"]["payment_attempt"]) for pi in intents] == [
        ("succeeded", "3")
    ]
    # The account keeps one Billow webhook endpoint: the rolled key removed the old one.
    endpoints = fixed.v1.webhook_endpoints.list().data
    assert len(endpoints) == 1 and endpoints[0].url.endswith(
        f"/webhooks/stripe/{stripe_org.id}?code=stripe"
    )
