"""The hourly reconciliation with Stripe (``stripe-events-sweep``): deliveries Stripe never
made are recovered from its event list, charges whose answer and event were both lost
are settled from Stripe's own record, and a second run repairs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from billow.adapters.organization_records import OrganizationRecords
from billow.services import reconciliation
from billow.services.payments import attempts
from tests.api.billing_helpers import stripe_customer, webhooks
from tests.api.conftest import StripeOrg
from tests.api.test_one_charge_per_invoice import (
    IN_FLIGHT,
    drop_deliveries,
    later,
    pay_a_failed_invoice_by_link_unheard,
    repairs_of,
)
from tests.api.test_payments import (
    charges_of,
    dead_lettered,
    get_invoice,
    inject_fault,
    one_off,
    refunds_of,
    stripe_config,
    succeeded,
    wait_payment_status,
    with_fee_add_on,
)
from tests.api.test_stripe_webhooks import stored_event


def test_a_link_payment_whose_event_was_never_delivered_is_recovered(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    cus, invoice = pay_a_failed_invoice_by_link_unheard(
        local_billow, stripe_org, "undelivered", 4100, wait_for
    )
    (paid,) = succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))

    result = local_billow.fire_schedule("stripe-events-sweep", later(0))
    repairs = repairs_of(result, stripe_org.id)
    assert repairs is not None and repairs["events_recovered"] == 1, result
    assert result["repaired"] >= 1
    settled = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert settled["total_paid_amount_cents"] == 4100
    local_billow.wait_idle()
    recovered = [
        event.id
        for event in stripe_org.stripe.v1.events.list(
            params={"type": "payment_intent.succeeded"}
        ).data
        if event.data.object["id"] == paid["id"]
    ]
    assert stored_event(local_billow, stripe_org.id, recovered[0])["status"] == "processed"
    assert [pi["id"] for pi in succeeded(charges_of(stripe_org, cus, invoice["lago_id"]))] == [
        paid["id"]
    ]
    assert refunds_of(stripe_org, paid["id"]) == []
    assert [
        w["invoice"]["payment_status"]
        for w in webhooks(subscribed, "invoice.payment_status_updated")
    ] == ["failed", "succeeded"]

    again = local_billow.fire_schedule("stripe-events-sweep", later(0))
    assert repairs_of(again, stripe_org.id) is None, again


def _charge_lost_in_the_dlq(
    local_billow: Any,
    org: StripeOrg,
    external_id: str,
    amount_cents: int,
    wait_for: Any,
    *,
    stripe_charged: bool,
) -> tuple[str, dict[str, Any]]:
    """An invoice whose charge message ends in the DLQ with the attempt still in flight:
    with ``stripe_charged``, Stripe took the money but every answer to Billow was lost, and
    so was Stripe's event; without, no request ever reached Stripe. Stripe works again
    afterwards. Returns the Stripe customer and the invoice."""
    with_fee_add_on(org, amount_cents)
    cus = stripe_customer(org, external_id, wait_for=wait_for)
    if stripe_charged:
        drop_deliveries(local_billow, org, 1, "payment_intent.succeeded")
        inject_fault(local_billow, org, "/v1/payment_intents", 1000, when="after")
    else:
        inject_fault(local_billow, org, "/v1/payment_intents", 1000)
    invoice = one_off(org, external_id)
    wait_for(lambda: dead_lettered(local_billow, "payments", invoice["lago_id"]), timeout=60)
    inject_fault(local_billow, org, "/v1/payment_intents", 0)
    return cus, invoice


@pytest.mark.usefixtures("quick_sdk_retries")
def test_a_charge_whose_answer_and_event_were_lost_is_settled_from_stripe(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    cus, invoice = _charge_lost_in_the_dlq(
        local_billow, stripe_org, "lost", 1900, wait_for, stripe_charged=True
    )
    assert get_invoice(stripe_org, invoice["lago_id"])["payment_status"] == "pending"
    (charge,) = charges_of(stripe_org, cus, invoice["lago_id"])
    assert charge["status"] == "succeeded"

    # Stripe's event list is out of reach this hour: the charge is settled from the
    # PaymentIntent itself, found by its attempt's metadata.
    inject_fault(local_billow, stripe_org, "/v1/events", 1000)
    result = local_billow.fire_schedule("stripe-events-sweep", later())
    repairs = repairs_of(result, stripe_org.id)
    assert repairs is not None, result
    assert (repairs["payments_settled"], repairs["attempts_redriven"]) == (1, 0)
    assert (repairs["events_recovered"], repairs["accounts_unreachable"]) == (0, 1)
    paid = get_invoice(stripe_org, invoice["lago_id"])
    assert (paid["payment_status"], paid["total_paid_amount_cents"]) == ("succeeded", 1900)

    # The next hour the list answers: the lost event only confirms the payment the
    # invoice now records, so there is nothing left to repair or store.
    inject_fault(local_billow, stripe_org, "/v1/events", 0)
    result = local_billow.fire_schedule("stripe-events-sweep", later())
    assert repairs_of(result, stripe_org.id) is None
    local_billow.wait_idle()
    assert get_invoice(stripe_org, invoice["lago_id"]) == paid
    assert [pi["id"] for pi in charges_of(stripe_org, cus, invoice["lago_id"])] == [charge["id"]]
    assert refunds_of(stripe_org, charge["id"]) == []
    again = local_billow.fire_schedule("stripe-events-sweep", later())
    assert repairs_of(again, stripe_org.id) is None, again


@pytest.mark.usefixtures("quick_sdk_retries")
def test_a_manual_retry_after_an_hour_of_silence_asks_stripe_before_charging_again(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An hour after an attempt Stripe never answered, a retry may go ahead, but only once
    Stripe says the attempt took no money: here it did, so the retry finds the invoice paid
    and charges nothing (before, the retry would have charged a second time)."""
    cus, invoice = _charge_lost_in_the_dlq(
        local_billow, stripe_org, "patient", 1300, wait_for, stripe_charged=True
    )
    for action in ("retry_payment", "payment_url"):
        status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/{action}")
        assert (status, body["code"]) == (405, IN_FLIGHT), (action, body)

    an_hour_later = later()
    monkeypatch.setattr(attempts, "utcnow", lambda: an_hour_later)
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status in (405, 422) and body["code"] == "invalid_status", body
    paid = get_invoice(stripe_org, invoice["lago_id"])
    assert (paid["payment_status"], paid["total_paid_amount_cents"]) == ("succeeded", 1300)
    local_billow.wait_idle()
    (charge,) = charges_of(stripe_org, cus, invoice["lago_id"])
    assert charge["metadata"]["payment_attempt"] == "1"
    assert refunds_of(stripe_org, charge["id"]) == []


@pytest.mark.usefixtures("quick_sdk_retries")
def test_a_manual_retry_after_an_hour_asks_again_for_an_attempt_stripe_never_saw(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe never got the attempt: the retry asks for the same attempt again, under its
    own idempotency key, rather than starting a second one."""
    cus, invoice = _charge_lost_in_the_dlq(
        local_billow, stripe_org, "unseen", 1100, wait_for, stripe_charged=False
    )
    an_hour_later = later()
    monkeypatch.setattr(attempts, "utcnow", lambda: an_hour_later)
    status, body = stripe_org.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status == 200, body
    paid = wait_payment_status(stripe_org, invoice["lago_id"], "succeeded", wait_for)
    assert paid["total_paid_amount_cents"] == 1100
    local_billow.wait_idle()
    (charge,) = charges_of(stripe_org, cus, invoice["lago_id"])
    assert charge["metadata"]["payment_attempt"] == "1"


def test_an_unreachable_account_does_not_stop_the_others(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    stripe_config(local_billow, "POST", "/_config/revoked_keys", {"api_key": stripe_org.secret_key})
    result = local_billow.fire_schedule("stripe-events-sweep", later(0))
    repairs = repairs_of(result, stripe_org.id)
    assert repairs is not None and repairs["accounts_unreachable"] == 1, result
    assert result["accounts_unreachable"] >= 1


def test_an_organization_the_sweep_fails_on_does_not_stop_the_others(
    local_billow: Any, stripe_org: StripeOrg, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug, or a stored event Billow cannot read, in one organization is logged and
    counted (``ReconciliationFailures``, which alarms); the organizations listed after it
    are still reconciled."""
    listed = OrganizationRecords.list_ids

    def broken_first(records: OrganizationRecords) -> Iterator[str]:
        yield "broken-organization"
        yield from listed(records)

    republish = reconciliation.republish_unprocessed

    def republish_or_fail(deps: Any, organization_id: str, now: Any) -> int:
        if organization_id == "broken-organization":
            raise RuntimeError("a stored event Billow cannot read")
        return republish(deps, organization_id, now)

    monkeypatch.setattr(OrganizationRecords, "list_ids", broken_first)
    monkeypatch.setattr(reconciliation, "republish_unprocessed", republish_or_fail)
    stripe_config(local_billow, "POST", "/_config/revoked_keys", {"api_key": stripe_org.secret_key})
    result = local_billow.fire_schedule("stripe-events-sweep", later(0))
    broken = repairs_of(result, "broken-organization")
    assert broken is not None and broken["failures"] == 1, result
    reached = repairs_of(result, stripe_org.id)
    assert reached is not None and reached["accounts_unreachable"] == 1, result
    assert result["failures"] >= 1
