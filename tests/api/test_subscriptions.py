"""Subscriptions through the Lago API and the billing run: dates, trials, plan changes,
termination, timezones and month ends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from billow.composition import dependencies
from billow.services import subscriptions
from tests.api.billing_helpers import (
    create_plan,
    invoices_of,
    payment_intents,
    stripe_customer,
    webhooks,
)
from tests.api.conftest import StripeOrg
from tests.conftest import ApiClient


def subscribe(org: Any, customer: str, plan: str, **fields: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/subscriptions",
        json={
            "subscription": {
                "external_customer_id": customer,
                "plan_code": plan,
                "external_id": fields.pop("external_id", f"{customer}-sub"),
                **fields,
            }
        },
    )
    assert status == 200, body
    return body["subscription"]  # type: ignore[no-any-return]


def run_billing(local_billow: Any, at: datetime) -> None:
    local_billow.fire_schedule("billing-run", at)
    local_billow.wait_idle()


def fee_spans(invoice: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [
        (fee["item"]["code"], fee["amount_cents"], fee["from_date"], fee["to_date"])
        for fee in invoice["fees"]
    ]


def oldest_first(org: Any, customer: str) -> list[dict[str, Any]]:
    return sorted(invoices_of(org, customer), key=lambda invoice: invoice["sequential_id"])


def test_future_subscription_waits_then_bills_anniversary_month_ends(
    local_billow: Any, org: Any, subscribed: Any
) -> None:
    """Started on 31 January: billed on 28 February, 31 March and 30 April."""
    create_plan(org, "monthly-advance", 3000, pay_in_advance=True)
    org.api.post("/customers", json={"customer": {"external_id": "jan31", "currency": "EUR"}})
    sub = subscribe(
        org,
        "jan31",
        "monthly-advance",
        billing_time="anniversary",
        subscription_at="2027-01-31T09:00:00Z",
    )
    assert sub["status"] == "pending"
    assert invoices_of(org, "jan31") == []

    run_billing(local_billow, datetime(2027, 1, 31, 10, tzinfo=UTC))
    assert org.api.get("/subscriptions/jan31-sub")[1]["subscription"]["status"] == "active"
    for moment in (
        datetime(2027, 2, 28, 1, tzinfo=UTC),
        datetime(2027, 2, 28, 2, tzinfo=UTC),  # a repeated run changes nothing
        datetime(2027, 3, 31, 1, tzinfo=UTC),
        datetime(2027, 4, 30, 1, tzinfo=UTC),
    ):
        run_billing(local_billow, moment)
    spans = [fee_spans(invoice)[0] for invoice in oldest_first(org, "jan31")]
    assert spans == [
        ("monthly-advance", 3000, "2027-01-31T09:00:00Z", "2027-02-27T23:59:59Z"),
        ("monthly-advance", 3000, "2027-02-28T00:00:00Z", "2027-03-30T23:59:59Z"),
        ("monthly-advance", 3000, "2027-03-31T00:00:00Z", "2027-04-29T23:59:59Z"),
        ("monthly-advance", 3000, "2027-04-30T00:00:00Z", "2027-05-30T23:59:59Z"),
    ]
    numbers = [invoice["sequential_id"] for invoice in oldest_first(org, "jan31")]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert len(webhooks(subscribed, "subscription.started")) == 1
    assert all(i["payment_status"] == "pending" for i in invoices_of(org, "jan31"))


def test_calendar_billing_follows_the_customers_timezone(local_billow: Any, org: Any) -> None:
    create_plan(org, "la-monthly", 3100)
    org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": "la",
                "currency": "EUR",
                "timezone": "America/Los_Angeles",
            }
        },
    )
    subscribe(org, "la", "la-monthly", subscription_at="2027-01-17T12:00:00Z")
    run_billing(local_billow, datetime(2027, 1, 17, 13, tzinfo=UTC))
    # 1 February starts at 08:00 UTC in Los Angeles: at 07:30 UTC nothing is due yet.
    run_billing(local_billow, datetime(2027, 2, 1, 7, 30, tzinfo=UTC))
    assert invoices_of(org, "la") == []
    run_billing(local_billow, datetime(2027, 2, 1, 8, 30, tzinfo=UTC))
    (invoice,) = invoices_of(org, "la")
    # 17 to 31 January, local days, start day included: 15 of 31 days.
    assert fee_spans(invoice) == [
        ("la-monthly", 1500, "2027-01-17T12:00:00Z", "2027-02-01T07:59:59Z")
    ]


def test_trial_bills_nothing_until_it_ends_then_the_rest_of_the_period(
    local_billow: Any, org: Any
) -> None:
    create_plan(org, "trial-advance", 3000, pay_in_advance=True, trial_period=10)
    org.api.post("/customers", json={"customer": {"external_id": "trial", "currency": "EUR"}})
    sub = subscribe(org, "trial", "trial-advance", subscription_at="2027-06-01T00:00:00Z")
    run_billing(local_billow, datetime(2027, 6, 1, 1, tzinfo=UTC))
    subscription = org.api.get(f"/subscriptions/{sub['external_id']}")[1]["subscription"]
    assert subscription["trial_ended_at"] == "2027-06-11T00:00:00Z"
    run_billing(local_billow, datetime(2027, 6, 10, 23, tzinfo=UTC))
    assert invoices_of(org, "trial") == []
    run_billing(local_billow, datetime(2027, 6, 11, 1, tzinfo=UTC))
    run_billing(local_billow, datetime(2027, 7, 1, 1, tzinfo=UTC))
    spans = [fee_spans(invoice)[0] for invoice in oldest_first(org, "trial")]
    assert spans == [
        ("trial-advance", 2000, "2027-06-11T00:00:00Z", "2027-06-30T23:59:59Z"),
        ("trial-advance", 3000, "2027-07-01T00:00:00Z", "2027-07-31T23:59:59Z"),
    ]


def test_upgrade_applies_at_once_and_downgrade_at_period_end(
    local_billow: Any, stripe_org: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    create_plan(stripe_org, "small", 1000)
    create_plan(stripe_org, "large", 5000)
    create_plan(stripe_org, "tiny", 500, pay_in_advance=True)
    stripe_customer(stripe_org, "changer", wait_for=wait_for)
    first = subscribe(stripe_org, "changer", "small", external_id="changer-plan")

    upgraded = subscribe(stripe_org, "changer", "large", external_id="changer-plan")
    assert upgraded["plan_code"] == "large"
    assert upgraded["previous_plan_code"] == "small"
    assert upgraded["lago_id"] != first["lago_id"]
    listed = stripe_org.api.get("/subscriptions?status[]=terminated&external_customer_id=changer")
    assert [s["plan_code"] for s in listed[1]["subscriptions"]] == ["small"]
    # Started and upgraded on the same day: the small plan's used day is billed, once.
    (upgrade_invoice,) = invoices_of(stripe_org, "changer")
    assert [fee["item"]["code"] for fee in upgrade_invoice["fees"]] == ["small"]

    downgraded = subscribe(stripe_org, "changer", "tiny", external_id="changer-plan")
    assert downgraded["plan_code"] == "large"
    assert downgraded["next_plan_code"] == "tiny"
    boundary_date = downgraded["downgrade_plan_date"]
    boundary = datetime.fromisoformat(boundary_date).replace(tzinfo=UTC)
    run_billing(local_billow, boundary + timedelta(hours=1))
    current = stripe_org.api.get("/subscriptions/changer-plan")[1]["subscription"]
    assert current["plan_code"] == "tiny" and current["status"] == "active"
    assert current["started_at"] == boundary.strftime("%Y-%m-%dT%H:%M:%SZ")
    swap = max(invoices_of(stripe_org, "changer"), key=lambda invoice: invoice["sequential_id"])
    assert [fee["item"]["code"] for fee in swap["fees"]] == ["large", "tiny"]
    assert swap["fees"][1]["amount_cents"] == 500  # a whole period of the new plan, in advance
    local_billow.wait_idle()
    assert len(webhooks(subscribed, "subscription.terminated")) == 2


def test_termination_bills_used_time_and_cancels_pending(local_billow: Any, org: Any) -> None:
    create_plan(org, "arrears", 3000)
    org.api.post("/customers", json={"customer": {"external_id": "leaver", "currency": "EUR"}})
    subscribe(org, "leaver", "arrears")
    status, body = org.api.delete("/subscriptions/leaver-sub")
    assert status == 200, body
    assert body["subscription"]["status"] == "terminated"
    (final,) = invoices_of(org, "leaver")
    assert final["fees"][0]["amount_cents"] > 0  # the day it was used, in arrears
    run_billing(local_billow, datetime.now(UTC) + timedelta(days=40))
    assert len(invoices_of(org, "leaver")) == 1
    assert org.api.delete("/subscriptions/leaver-sub")[0] == 404

    subscribe(org, "leaver", "arrears", external_id="later", subscription_at="2030-01-01T00:00:00Z")
    status, body = org.api.delete("/subscriptions/later?status=pending")
    assert status == 200 and body["subscription"]["status"] == "canceled"
    run_billing(local_billow, datetime(2030, 1, 2, tzinfo=UTC))
    assert org.api.get("/subscriptions/later")[1]["subscription"]["status"] == "canceled"
    assert len(invoices_of(org, "leaver")) == 1


def test_ending_at_terminates_through_the_billing_run(local_billow: Any, org: Any) -> None:
    create_plan(org, "ending", 3000)
    org.api.post("/customers", json={"customer": {"external_id": "ender", "currency": "EUR"}})
    subscribe(
        org,
        "ender",
        "ending",
        subscription_at="2028-03-01T00:00:00Z",
        ending_at="2028-03-16T00:00:00Z",
    )
    run_billing(local_billow, datetime(2028, 3, 1, 1, tzinfo=UTC))
    run_billing(local_billow, datetime(2028, 3, 16, 1, tzinfo=UTC))
    subscription = org.api.get("/subscriptions/ender-sub")[1]["subscription"]
    assert subscription["status"] == "terminated"
    assert subscription["terminated_at"] == "2028-03-16T00:00:00Z"
    (invoice,) = invoices_of(org, "ender")
    assert fee_spans(invoice) == [
        ("ending", 1452, "2028-03-01T00:00:00Z", "2028-03-15T23:59:59Z")
    ]  # 15 of 31 days


def test_bad_subscription_requests_are_lago_errors_and_change_nothing(
    org: Any, local_billow: Any
) -> None:
    create_plan(org, "euro", 1000)
    org.api.post("/customers", json={"customer": {"external_id": "usd", "currency": "USD"}})
    org.api.post("/customers", json={"customer": {"external_id": "eur", "currency": "EUR"}})
    cases = [
        ({"external_customer_id": "nobody", "plan_code": "euro"}, 404, "customer_not_found"),
        ({"external_customer_id": "eur", "plan_code": "missing"}, 404, "plan_not_found"),
        ({"external_customer_id": "usd", "plan_code": "euro"}, 422, "validation_errors"),
        (
            {
                "external_customer_id": "eur",
                "plan_code": "euro",
                "payment_method": {"payment_method_type": "provider", "payment_method_id": "x"},
            },
            404,
            "payment_method_not_found",
        ),
        (
            {"external_customer_id": "eur", "plan_code": "euro", "plan_overrides": {"a": 1}},
            422,
            "validation_errors",
        ),
        (
            {
                "external_customer_id": "eur",
                "plan_code": "euro",
                "subscription_at": "2030-01-02T00:00:00Z",
                "ending_at": "2030-01-01T00:00:00Z",
            },
            422,
            "validation_errors",
        ),
        ({"external_customer_id": "eur", "plan_code": "euro", "billing_time": "x"}, 422, None),
    ]
    for subscription, status, code in cases:
        got, body = org.api.post("/subscriptions", json={"subscription": subscription})
        assert got == status, (subscription, body)
        if code:
            assert body["code"] == code
    assert org.api.get("/subscriptions?status[]=active&status[]=pending")[1]["subscriptions"] == []

    subscribe(org, "eur", "euro", external_id="mine")
    other = local_billow.create_organization("Other")
    other_org = ApiClient(local_billow.api_url, other.api_key)
    assert other_org.get("/subscriptions/mine")[0] == 404
    assert other_org.delete("/subscriptions/mine")[0] == 404
    assert other_org.get("/subscriptions")[1]["subscriptions"] == []


def test_deleting_a_plan_ends_its_subscriptions(local_billow: Any, org: Any) -> None:
    create_plan(org, "doomed", 3000)
    create_plan(org, "keeper", 6000)
    org.api.post("/customers", json={"customer": {"external_id": "holder", "currency": "EUR"}})
    subscribe(org, "holder", "doomed", external_id="now")
    subscribe(org, "holder", "doomed", external_id="later", subscription_at="2031-01-01T00:00:00Z")
    subscribe(org, "holder", "keeper", external_id="stays")
    downgrade = subscribe(org, "holder", "doomed", external_id="stays")
    assert downgrade["next_plan_code"] == "doomed"

    assert org.api.delete("/plans/doomed")[0] == 200
    assert org.api.get("/subscriptions/now")[1]["subscription"]["status"] == "terminated"
    assert org.api.get("/subscriptions/later")[1]["subscription"]["status"] == "canceled"
    # The downgrade to the deleted plan is dropped: the current plan simply goes on.
    boundary = datetime.fromisoformat(downgrade["downgrade_plan_date"]).replace(tzinfo=UTC)
    run_billing(local_billow, boundary + timedelta(hours=1))
    stays = org.api.get("/subscriptions/stays")[1]["subscription"]
    assert (stays["plan_code"], stays["status"], stays["next_plan_code"]) == (
        "keeper",
        "active",
        None,
    )


def test_coupons_and_taxes_apply_to_subscription_invoices(local_billow: Any, org: Any) -> None:
    assert (
        org.api.post("/taxes", json={"tax": {"name": "VAT", "code": "vat", "rate": "20"}})[0] == 200
    )
    create_plan(org, "taxed", 10000, pay_in_advance=True, tax_codes=["vat"])
    org.api.post("/customers", json={"customer": {"external_id": "saver", "currency": "EUR"}})
    for coupon in (
        {
            "code": "welcome",
            "coupon_type": "fixed_amount",
            "amount_cents": 1500,
            "amount_currency": "EUR",
            "frequency": "once",
        },
        {
            "code": "tenoff",
            "coupon_type": "percentage",
            "percentage_rate": "10",
            "frequency": "recurring",
            "frequency_duration": 2,
        },
    ):
        status, body = org.api.post(
            "/coupons",
            json={"coupon": {"name": coupon["code"], "expiration": "no_expiration", **coupon}},
        )
        assert status == 200, body
        status, body = org.api.post(
            "/applied_coupons",
            json={
                "applied_coupon": {"external_customer_id": "saver", "coupon_code": coupon["code"]}
            },
        )
        assert status == 200, body
    subscribe(
        org, "saver", "taxed", billing_time="anniversary", subscription_at="2029-05-10T00:00:00Z"
    )
    for moment in (
        datetime(2029, 5, 10, 1, tzinfo=UTC),
        datetime(2029, 6, 10, 1, tzinfo=UTC),
        datetime(2029, 7, 10, 1, tzinfo=UTC),
    ):
        run_billing(local_billow, moment)
    totals = [
        (
            i["fees_amount_cents"],
            i["coupons_amount_cents"],
            i["taxes_amount_cents"],
            i["total_amount_cents"],
        )
        for i in oldest_first(org, "saver")
    ]
    assert totals == [
        (10000, 1500 + 850, 1530, 9180),  # 15.00 off, then 10 % of the remaining 85.00
        (10000, 1000, 1800, 10800),  # the fixed coupon is used up; 10 % once more
        (10000, 0, 2000, 12000),  # the recurring coupon ran out after two periods
    ]
    status, body = org.api.get("/applied_coupons?external_customer_id=saver&status=terminated")
    assert sorted(c["coupon_code"] for c in body["applied_coupons"]) == ["tenoff", "welcome"]


def test_simultaneous_creations_with_one_external_id_make_one_subscription(
    local_billow: Any, org: Any
) -> None:
    """Two API Lambdas may take the same request at once. Local mode runs one invocation of
    a function at a time (its handlers keep per-request state), so the race is played
    where it happens: the use case, called from several threads against the same stores."""
    create_plan(org, "racy", 2000, pay_in_advance=True)
    org.api.post("/customers", json={"customer": {"external_id": "racer", "currency": "EUR"}})
    request = subscriptions.CreateSubscription.model_validate(
        {
            "subscription": {
                "external_customer_id": "racer",
                "plan_code": "racy",
                "external_id": "only-one",
            }
        }
    )
    made: list[str] = []
    changes: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        created = subscriptions.create(dependencies(), org.id, request, datetime.now(UTC))
        made.append(created.view.subscription.lago_id)
        changes.append(created.change)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 8 and len(set(made)) == 1
    # One request started it; the others, decided again against it, changed nothing.
    assert sorted(changes) == ["started"] + ["unchanged"] * 7
    local_billow.wait_idle()
    listed = org.api.get("/subscriptions?external_customer_id=racer")[1]["subscriptions"]
    assert len(listed) == 1
    assert len(invoices_of(org, "racer")) == 1


def test_a_hold_stripe_could_not_take_is_refused_before_stripe_is_asked(
    stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Amounts Stripe cannot charge (at most eight digits of minor units) and currencies
    that are not ISO 4217 used to be sent to Stripe as they came (a hold of 10**30 "zzz"):
    now a 422, no subscription and no PaymentIntent."""
    create_plan(stripe_org, "basic", 1000)
    cus = stripe_customer(stripe_org, "holder", wait_for=wait_for)

    def subscribe_holding(authorization: dict[str, Any]) -> tuple[int, Any]:
        return stripe_org.api.post(  # type: ignore[no-any-return]
            "/subscriptions",
            json={
                "subscription": {
                    "external_customer_id": "holder",
                    "plan_code": "basic",
                    "external_id": "holder-sub",
                },
                "authorization": authorization,
            },
        )

    for authorization, field in (
        ({"amount_cents": 10**30, "amount_currency": "zzz"}, None),
        ({"amount_cents": 10**30, "amount_currency": "EUR"}, "amount_cents"),
        ({"amount_cents": 100_000_000, "amount_currency": "EUR"}, "amount_cents"),
        ({"amount_cents": 0, "amount_currency": "EUR"}, "amount_cents"),
        ({"amount_cents": -100, "amount_currency": "EUR"}, "amount_cents"),
        ({"amount_cents": 100, "amount_currency": "ZZZ"}, "amount_currency"),
        ({"amount_cents": 100, "amount_currency": "zzz"}, "amount_currency"),
        ({"amount_cents": 100, "amount_currency": "eur"}, "amount_currency"),
    ):
        status, body = subscribe_holding(authorization)
        assert status == 422, (authorization, body)
        fields = (
            {f"authorization.{field}"}
            if field
            else {
                "authorization.amount_cents",
                "authorization.amount_currency",
            }
        )
        assert set(body["error_details"]) == fields, body
    assert stripe_org.api.get("/subscriptions/holder-sub")[0] == 404
    assert payment_intents(stripe_org, cus) == []

    status, body = subscribe_holding({"amount_cents": 99_999_999, "amount_currency": "EUR"})
    assert status == 200, body
    assert body["subscription"]["authorization"]["amount"] == 99_999_999


def test_dates_are_iso_8601_strings_not_numbers(org: Any) -> None:
    """pydantic reads a number (or a string of digits) as seconds since 1970; Lago's dates
    are ISO 8601 strings, so anything else is ``invalid_date`` and changes nothing."""
    create_plan(org, "basic", 1000)
    org.api.post("/customers", json={"customer": {"external_id": "dated", "currency": "EUR"}})
    for field, value in (
        ("subscription_at", 4_000_000_000),
        ("subscription_at", "4000000000"),
        ("subscription_at", 4.0e9),
        ("subscription_at", True),
        ("subscription_at", "2099-01-01"),
        ("ending_at", 4_000_000_000),
    ):
        status, body = org.api.post(
            "/subscriptions",
            json={
                "subscription": {
                    "external_customer_id": "dated",
                    "plan_code": "basic",
                    "external_id": "dated-sub",
                    field: value,
                }
            },
        )
        assert status == 422, (field, value, body)
        assert body["error_details"] == {field: ["invalid_date"]}, body
    assert org.api.get("/subscriptions/dated-sub")[0] == 404

    subscribe(org, "dated", "basic", external_id="dated-sub", subscription_at="2099-01-01T00:00Z")
    status, body = org.api.put(
        "/subscriptions/dated-sub", json={"subscription": {"subscription_at": 4_000_000_000}}
    )
    assert status == 422 and body["error_details"] == {"subscription_at": ["invalid_date"]}
    shown = org.api.get("/subscriptions/dated-sub")[1]["subscription"]
    assert shown["subscription_at"] == "2099-01-01T00:00:00Z"
