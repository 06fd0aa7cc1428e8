"""Subscriptions invoiced by Stripe Billing (seed 004): made in Stripe on the plan's
Price, never invoiced by Billow as well, moved to another Price on an upgrade, canceled
when terminated in Billow, and terminated in Billow when canceled in Stripe. The rules
for what Billow keeps billing itself are shown with their reason."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billow.composition import dependencies
from billow.domain import stripe_sync
from billow.domain.clock import iso, utcnow
from billow.domain.errors import ValidationFailed
from billow.services import subscriptions
from billow.services.stripe_sync.invoices import mirror_invoice
from tests.api.billing_helpers import (
    create_plan,
    invoices_of,
    next_month_start,
    payment_intents,
    stripe_customer,
    webhooks,
)
from tests.api.conftest import StripeOrg


def subscribe(org: Any, customer: str, plan: str, external_id: str = "sub-1") -> dict[str, Any]:
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": customer,
                "plan_code": plan,
                "external_id": external_id,
                "billing_time": "anniversary",
            }
        },
    )
    assert status == 200, body
    created: dict[str, Any] = body["subscription"]
    return created


def billow_charges(org: StripeOrg, stripe_customer_id: str) -> list[dict[str, Any]]:
    """PaymentIntents Billow made (they name a Billow invoice); Stripe's own, for its
    invoices, do not."""
    return [
        intent
        for intent in payment_intents(org, stripe_customer_id)
        if (intent.get("metadata") or {}).get("lago_invoice_id")
    ]


def billow_and_stripe_invoices(
    org: Any, external_customer_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The customer's invoices Billow issued, and those it copied from Stripe."""
    invoices = invoices_of(org, external_customer_id)
    return (
        [invoice for invoice in invoices if invoice["stripe_invoice"] is None],
        [invoice for invoice in invoices if invoice["stripe_invoice"] is not None],
    )


def mirrored(org: Any, external_id: str, wait_for: Any, status: str = "succeeded") -> Any:
    def reached() -> dict[str, Any] | None:
        code, body = org.api.get(f"/subscriptions/{external_id}")
        assert code == 200, body
        sync = body["subscription"]["stripe_sync"]
        assert sync["status"] != "failed" or status == "failed", sync
        return body["subscription"] if sync["status"] == status else None

    return wait_for(reached)


def test_stripe_bills_a_synced_subscription_and_billow_never_does(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900, pay_in_advance=True)
    stripe_id = stripe_customer(billing, "acme", wait_for=wait_for)
    created = subscribe(billing, "acme", "pro")
    assert created["stripe_sync"]["status"] == "pending"

    sub = mirrored(billing, "sub-1", wait_for)
    stripe_sub = billing.stripe.v1.subscriptions.retrieve(sub["stripe_sync"]["stripe_id"])
    assert stripe_sub.customer == stripe_id and stripe_sub.status == "active"
    assert stripe_sub.metadata["billow_external_id"] == "sub-1"
    assert sub["stripe_sync"]["stripe_url"].endswith(f"/test/subscriptions/{stripe_sub.id}")
    [item] = stripe_sub["items"]["data"]
    _, plan = billing.api.get("/plans/pro")
    plan_price = plan["plan"]["stripe_sync"]
    assert item["price"]["product"] == plan_price["stripe_id"]
    assert item["price"]["unit_amount"] == 4900

    # A whole period goes by: Billow's run reaches the subscription and bills nothing.
    local_billow.fire_schedule("billing-run", next_month_start(utcnow()) + timedelta(days=40))
    local_billow.wait_idle()
    [invoice] = billow_and_stripe_invoices(billing, "acme")[1]  # Stripe's first, mirrored
    assert invoice["stripe_invoice"]["id"] == stripe_sub.latest_invoice
    assert billow_charges(billing, stripe_id) == []
    assert len(webhooks(subscribed, "invoice.created")) == 1


@pytest.mark.parametrize(
    ("plan_fields", "card", "reason"),
    [
        ({"amount_cents": 0}, True, "free_plan"),
        ({"trial_period": 14}, True, "trial"),
    ],
)
def test_what_billow_keeps_billing_itself_says_why(
    billing: StripeOrg, wait_for: Any, plan_fields: dict[str, Any], card: bool, reason: str
) -> None:
    create_plan(billing, "basic", **{"amount_cents": 1000, **plan_fields})
    stripe_customer(billing, "acme", wait_for=wait_for)
    created = subscribe(billing, "acme", "basic")
    assert created["stripe_sync"]["status"] == "not_required"
    assert created["stripe_sync"]["reason"] == reason
    assert list(billing.stripe.v1.subscriptions.list().data) == []


def test_without_subscription_sync_billow_bills_as_before(
    stripe_org: StripeOrg, wait_for: Any
) -> None:
    create_plan(stripe_org, "pro", amount_cents=1000, pay_in_advance=True)
    stripe_customer(stripe_org, "acme", wait_for=wait_for)
    created = subscribe(stripe_org, "acme", "pro")
    assert created["stripe_sync"]["reason"] == "subscription_sync_disabled"
    wait_for(lambda: invoices_of(stripe_org, "acme"))


def test_a_customer_stripe_cannot_charge_goes_back_to_billow(
    billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Stripe refuses a subscription with no card to charge: the sync fails, visibly,
    and Billow bills the subscription itself from its start, so it is never unbilled."""
    create_plan(billing, "pro", amount_cents=2500, pay_in_advance=True)
    stripe_customer(billing, "nocard", card=None)
    subscribe(billing, "nocard", "pro")
    sub = mirrored(billing, "sub-1", wait_for, status="failed")
    assert sub["stripe_sync"]["error"]["code"] == "resource_missing"
    [invoice] = wait_for(lambda: invoices_of(billing, "nocard"))
    assert invoice["fees_amount_cents"] == 2500
    [failed] = wait_for(lambda: webhooks(subscribed, "stripe_sync.failed"))
    assert failed["stripe_sync_error"]["object_type"] == "subscription"
    _, body = billing.api.get("/subscriptions/sub-1")
    assert body["subscription"]["stripe_sync"]["status"] == "failed"
    assert list(billing.stripe.v1.subscriptions.list().data) == []


def test_an_upgrade_moves_the_stripe_subscription_to_the_new_price(
    billing: StripeOrg, wait_for: Any
) -> None:
    create_plan(billing, "basic", amount_cents=1000)
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "basic")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]

    upgraded = subscribe(billing, "acme", "pro")
    assert upgraded["plan_code"] == "pro"

    def on_pro() -> bool:
        items = billing.stripe.v1.subscriptions.retrieve(stripe_id)["items"]["data"]
        return bool(items[0]["price"]["unit_amount"] == 4900)

    wait_for(on_pro)
    sub = mirrored(billing, "sub-1", wait_for)
    assert sub["stripe_sync"]["stripe_id"] == stripe_id
    assert billing.stripe.v1.subscriptions.retrieve(stripe_id).status == "active"
    assert len(list(billing.stripe.v1.subscriptions.list().data)) == 1
    assert billow_and_stripe_invoices(billing, "acme")[0] == []


def test_terminating_in_billow_cancels_in_stripe(billing: StripeOrg, wait_for: Any) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]
    status, body = billing.api.delete("/subscriptions/sub-1")
    assert status == 200, body
    assert body["subscription"]["status"] == "terminated"
    wait_for(lambda: billing.stripe.v1.subscriptions.retrieve(stripe_id).status == "canceled")
    assert billow_and_stripe_invoices(billing, "acme")[0] == []  # Stripe invoiced it


def test_canceling_in_stripe_terminates_in_billow_without_an_invoice(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]

    billing.stripe.v1.subscriptions.cancel(stripe_id)  # in Stripe's dashboard, say

    def terminated() -> bool:
        _, body = billing.api.get("/subscriptions/sub-1?status[]=terminated")
        return bool(body["subscription"]["status"] == "terminated")

    wait_for(terminated)
    local_billow.wait_idle()
    [ended] = webhooks(subscribed, "subscription.terminated")
    assert ended["subscription"]["external_id"] == "sub-1"
    assert billow_and_stripe_invoices(billing, "acme")[0] == []


# -- Stripe's invoices, mirrored ------------------------------------------------------------

DECLINES_LATER = "4000000000000341"


def stripe_invoices(org: Any, external_customer_id: str) -> list[dict[str, Any]]:
    invoices = invoices_of(org, external_customer_id)
    assert all(invoice["stripe_invoice"] for invoice in invoices), invoices
    return invoices


def test_a_test_clock_cycle_bills_each_period_once_through_stripe(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Two periods go by: Stripe invoices each (mirrored in Billow, paid), Billow's own
    run reaches the same boundary and invoices nothing, and Billow never charges."""
    create_plan(billing, "pro", amount_cents=4900, amount_currency="EUR")
    start = int(utcnow().timestamp())
    clock = billing.stripe.v1.test_helpers.test_clocks.create(params={"frozen_time": start})
    stripe_id = stripe_customer(billing, "acme", wait_for=wait_for, test_clock=clock.id)
    subscribe(billing, "acme", "pro")
    mirrored(billing, "sub-1", wait_for)
    [first] = wait_for(lambda: stripe_invoices(billing, "acme"))
    wait_for(lambda: stripe_invoices(billing, "acme")[0]["payment_status"] == "succeeded")

    renewal = start + 31 * 24 * 3600 + 3600
    billing.stripe.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": renewal})
    local_billow.fire_schedule("billing-run", utcnow() + timedelta(days=32))
    local_billow.wait_idle()

    invoices = wait_for(
        lambda: (
            (found := stripe_invoices(billing, "acme"))
            and len(found) == 2
            and all(i["payment_status"] == "succeeded" for i in found)
            and found
        )
    )
    assert {i["total_amount_cents"] for i in invoices} == {4900}
    assert {i["lago_id"] for i in invoices} >= {first["lago_id"]}
    assert all(i["stripe_invoice"]["hosted_invoice_url"] for i in invoices)
    assert all(i["fees"][0]["external_subscription_id"] == "sub-1" for i in invoices)
    assert billow_charges(billing, stripe_id) == []  # Billow never charged
    local_billow.wait_idle()
    assert len(webhooks(subscribed, "invoice.created")) == 2


def test_a_payment_stripe_fails_is_announced_and_left_to_stripe(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900, amount_currency="EUR")
    clock = billing.stripe.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(utcnow().timestamp())}
    )
    stripe_id = stripe_customer(
        billing, "acme", DECLINES_LATER, wait_for=wait_for, test_clock=clock.id
    )
    subscribe(billing, "acme", "pro")
    [invoice] = wait_for(
        lambda: [i for i in stripe_invoices(billing, "acme") if i["payment_status"] == "failed"]
    )
    [failure] = wait_for(lambda: webhooks(subscribed, "invoice.payment_failure"))
    assert (
        failure["payment_provider_invoice_payment_error"]["lago_invoice_id"] == invoice["lago_id"]
    )

    # Billow's dunning and its payment routes leave Stripe's invoice to Stripe.
    local_billow.fire_schedule("dunning-run", utcnow() + timedelta(days=8))
    local_billow.wait_idle()
    assert billow_charges(billing, stripe_id) == []
    status, body = billing.api.post(f"/invoices/{invoice['lago_id']}/retry_payment")
    assert status == 405, body
    status, body = billing.api.post(f"/invoices/{invoice['lago_id']}/void")
    assert status == 405, body
    assert len(webhooks(subscribed, "invoice.payment_failure")) == 1


def test_a_downgrade_moves_the_stripe_subscription_at_the_period_end(
    local_billow: Any, billing: StripeOrg, wait_for: Any
) -> None:
    create_plan(billing, "basic", amount_cents=1000)
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]

    downgraded = subscribe(billing, "acme", "basic")
    assert downgraded["next_plan_code"] == "basic"
    local_billow.wait_idle()

    def unit_amount() -> int:
        items = billing.stripe.v1.subscriptions.retrieve(stripe_id)["items"]["data"]
        return int(items[0]["price"]["unit_amount"])

    assert unit_amount() == 4900  # still pro until the period ends

    local_billow.fire_schedule("billing-run", utcnow() + timedelta(days=32))
    local_billow.wait_idle()
    wait_for(lambda: unit_amount() == 1000)
    _, body = billing.api.get("/subscriptions/sub-1")
    assert body["subscription"]["plan_code"] == "basic"
    assert body["subscription"]["stripe_sync"]["stripe_id"] == stripe_id
    assert billow_and_stripe_invoices(billing, "acme")[0] == []


def test_stripe_caps_the_subscriptions_it_bills_per_customer(
    billing: StripeOrg, wait_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe allows 500 active subscriptions per customer; the cap is lowered to 2 here
    so the test makes three, not 501."""
    monkeypatch.setattr(stripe_sync, "MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER", 2)
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro", external_id="sub-1")
    subscribe(billing, "acme", "pro", external_id="sub-2")
    status, body = billing.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "acme",
                "plan_code": "pro",
                "external_id": "sub-3",
            }
        },
    )
    assert status == 422, body
    assert body["error_details"] == {"external_customer_id": ["stripe_subscriptions_limit_reached"]}
    status, _ = billing.api.get("/subscriptions/sub-3")
    assert status == 404  # nothing was made
    # Ending one makes room again.
    status, body = billing.api.delete("/subscriptions/sub-1")
    assert status == 200, body
    subscribe(billing, "acme", "pro", external_id="sub-3")


def test_late_and_repeated_invoice_events_change_nothing(
    local_billow: Any, billing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Stripe's ``invoice.created`` delivered again after ``invoice.paid`` (late, or a
    retry) neither brings the paid copy back to pending nor makes a second invoice."""
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    [paid] = wait_for(
        lambda: [i for i in invoices_of(billing, "acme") if i["payment_status"] == "succeeded"]
    )
    stripe_invoice = billing.stripe.v1.invoices.retrieve(paid["stripe_invoice"]["id"]).to_dict()
    deps = dependencies()
    connection = deps.store.connections.get(billing.id, "stripe")
    assert connection is not None
    as_created = {**stripe_invoice, "status": "draft", "amount_paid": 0, "number": None}
    assert mirror_invoice(deps, connection, as_created) == "processed"
    [after_late] = invoices_of(billing, "acme")
    assert (after_late["payment_status"], after_late["number"]) == ("succeeded", paid["number"])
    assert mirror_invoice(deps, connection, stripe_invoice) == "processed"
    [again] = invoices_of(billing, "acme")
    assert (again["lago_id"], again["payment_status"], again["number"]) == (
        paid["lago_id"],
        "succeeded",
        paid["number"],
    )
    local_billow.wait_idle()
    assert len(webhooks(subscribed, "invoice.created")) == 1


def test_a_repriced_plan_moves_its_stripe_subscriptions_to_the_new_price(
    billing: StripeOrg, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro")
    stripe_id = mirrored(billing, "sub-1", wait_for)["stripe_sync"]["stripe_id"]
    status, body = billing.api.put("/plans/pro", json={"plan": {"amount_cents": 5900}})
    assert status == 200, body

    def price() -> dict[str, Any]:
        found: dict[str, Any] = billing.stripe.v1.subscriptions.retrieve(stripe_id)["items"][
            "data"
        ][0]["price"]
        return found

    wait_for(lambda: price()["unit_amount"] == 5900)
    assert price()["active"] is True
    # The period already paid is not prorated: Stripe bills the new amount from the next.
    assert len(billow_and_stripe_invoices(billing, "acme")[1]) == 1


def test_customers_show_where_they_stand_in_stripe(billing: StripeOrg, wait_for: Any) -> None:
    stripe_id = stripe_customer(billing, "acme", wait_for=wait_for)
    status, body = billing.api.get("/customers/acme")
    assert status == 200, body
    sync = body["customer"]["stripe_sync"]
    assert (sync["status"], sync["stripe_id"]) == ("succeeded", stripe_id)
    assert sync["stripe_url"] == f"https://dashboard.stripe.com/test/customers/{stripe_id}"

    status, body = billing.api.post("/customers", json={"customer": {"external_id": "cash"}})
    assert status == 200, body
    assert body["customer"]["stripe_sync"]["status"] == "not_required"
    assert body["customer"]["stripe_sync"]["reason"] == "payment_provider_not_stripe"


def test_a_trial_is_billed_by_billow_until_it_ends_then_by_stripe(
    local_billow: Any, billing: StripeOrg, wait_for: Any
) -> None:
    create_plan(billing, "pro", amount_cents=4900, trial_period=14, pay_in_advance=True)
    stripe_customer(billing, "acme", wait_for=wait_for)
    created = subscribe(billing, "acme", "pro")
    assert created["stripe_sync"]["reason"] == "trial"

    local_billow.fire_schedule("billing-run", utcnow() + timedelta(days=15))
    local_billow.wait_idle()
    sub = mirrored(billing, "sub-1", wait_for)
    stripe_sub = billing.stripe.v1.subscriptions.retrieve(sub["stripe_sync"]["stripe_id"])
    assert stripe_sub.status == "active"
    assert billow_and_stripe_invoices(billing, "acme")[0] == []  # the trial cost nothing


def test_turning_subscription_sync_on_hands_running_ones_over_at_their_next_period(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Billow bills the period under way; from the boundary on, Stripe bills."""
    status, body = stripe_org.api.post(
        "/integrations/stripe",
        json={"integration": {"secret_key": stripe_org.secret_key, "sync_catalog": True}},
    )
    assert status == 200, body
    create_plan(stripe_org, "pro", amount_cents=4900)
    stripe_customer(stripe_org, "acme", wait_for=wait_for)
    created = subscribe(stripe_org, "acme", "pro")
    assert created["stripe_sync"]["reason"] == "subscription_sync_disabled"
    status, body = stripe_org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": "acme",
                "plan_code": "pro",
                "external_id": "sub-later",
                "subscription_at": iso(utcnow() + timedelta(days=10)),
            }
        },
    )
    assert status == 200 and body["subscription"]["status"] == "pending", body

    status, body = stripe_org.api.post(
        "/integrations/stripe",
        json={
            "integration": {
                "secret_key": stripe_org.secret_key,
                "sync_catalog": True,
                "sync_subscriptions": True,
            }
        },
    )
    assert status == 200, body
    local_billow.wait_idle()
    _, body = stripe_org.api.get("/subscriptions/sub-1")
    assert body["subscription"]["stripe_sync"]["reason"] == "sync_starts_next_period"
    # One that has not started is Stripe's at once; its twin is made when it starts.
    _, body = stripe_org.api.get("/subscriptions/sub-later?status[]=pending")
    assert body["subscription"]["stripe_sync"]["status"] == "pending"
    assert body["subscription"]["stripe_sync"]["stripe_id"] is None
    assert list(stripe_org.stripe.v1.subscriptions.list().data) == []

    local_billow.fire_schedule("billing-run", utcnow() + timedelta(days=32))
    local_billow.wait_idle()
    sub = mirrored(stripe_org, "sub-1", wait_for)
    assert stripe_org.stripe.v1.subscriptions.retrieve(sub["stripe_sync"]["stripe_id"])
    later = mirrored(stripe_org, "sub-later", wait_for)
    assert later["stripe_sync"]["stripe_id"] not in (None, sub["stripe_sync"]["stripe_id"])
    [billow_invoice] = billow_and_stripe_invoices(stripe_org, "acme")[0]
    assert billow_invoice["fees_amount_cents"] == 4900  # sub-1's first period, in arrears
    wait_for(lambda: len(billow_and_stripe_invoices(stripe_org, "acme")[1]) == 2)

    local_billow.fire_schedule("billing-run", utcnow() + timedelta(days=63))
    local_billow.wait_idle()
    assert len(billow_and_stripe_invoices(stripe_org, "acme")[0]) == 1


def test_simultaneous_creations_never_pass_stripes_cap(
    billing: StripeOrg, wait_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four creations race for the last place under the cap (lowered to 2). Local mode runs
    one API invocation at a time, so the race is played where it happens: the use case,
    from several threads. The counter's conditional update lets one through; the others,
    decided again, get the 422."""
    monkeypatch.setattr(stripe_sync, "MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER", 2)
    create_plan(billing, "pro", amount_cents=4900)
    stripe_customer(billing, "acme", wait_for=wait_for)
    subscribe(billing, "acme", "pro", external_id="sub-1")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def create(n: int) -> None:
        request = subscriptions.CreateSubscription.model_validate(
            {
                "subscription": {
                    "external_customer_id": "acme",
                    "plan_code": "pro",
                    "external_id": f"racer-{n}",
                }
            }
        )
        barrier.wait()
        try:
            subscriptions.create(dependencies(), billing.id, request, datetime.now(UTC))
            outcomes.append("made")
        except ValidationFailed as refused:
            outcomes.append(str(refused.details))

    racers = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    refusal = str({"external_customer_id": ["stripe_subscriptions_limit_reached"]})
    assert sorted(outcomes) == sorted(["made"] + [refusal] * 3)
    assert dependencies().store.subscriptions.count_stripe_billed(billing.id, "acme") == 2
