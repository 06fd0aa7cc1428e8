"""The catalog mirrored in Stripe Billing (seed 004): plans and add-ons as Products with
versioned Prices, coupons as Stripe Coupons, each with its sync status in Billow.

Driven through Billow's API; what Stripe holds is checked with the official SDK against
the emulator, as a person would check Stripe's dashboard."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import stripe

from billow.composition import dependencies
from billow.services.stripe_sync.mirror import sync_object
from tests.api.billing_helpers import webhooks
from tests.api.conftest import StripeOrg, new_stripe_key, stripe_client
from tests.api.test_payments import stripe_config


def connect(org: Any, key: str, **options: Any) -> tuple[int, Any]:
    return org.api.post(
        "/integrations/stripe", json={"integration": {"secret_key": key, **options}}
    )


@pytest.fixture
def syncing(local_billow: Any, org: Any) -> StripeOrg:
    """An organization whose catalog is mirrored in its own Stripe account."""
    key = new_stripe_key()
    status, body = connect(org, key, sync_catalog=True)
    assert status == 200, body
    assert body["integration"]["sync_catalog"] is True
    return StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))


def synced(org: Any, path: str, wait_for: Any, status: str = "succeeded") -> dict[str, Any]:
    """The object once its ``stripe_sync`` reaches ``status``."""
    resource = path.split("/", maxsplit=1)[0].rstrip("s")

    def reached() -> dict[str, Any] | None:
        code, body = org.api.get(f"/{path}")
        assert code == 200, body
        found: dict[str, Any] = body[resource]
        reached = found["stripe_sync"]["status"]
        assert reached != "failed" or status == "failed", found["stripe_sync"]
        return found if reached == status else None

    result: dict[str, Any] = wait_for(reached)
    return result


def create_plan(org: Any, code: str = "pro", **fields: Any) -> dict[str, Any]:
    plan = {
        "name": "Pro",
        "code": code,
        "interval": "monthly",
        "amount_cents": 4900,
        "amount_currency": "USD",
        **fields,
    }
    status, body = org.api.post("/plans", json={"plan": plan})
    assert status == 200, body
    created: dict[str, Any] = body["plan"]
    return created


def prices(client: stripe.StripeClient, product_id: str, **filters: Any) -> list[Any]:
    return list(client.v1.prices.list(params={"product": product_id, **filters}).data)


# -- turning it on ------------------------------------------------------------------------


def test_sync_options_default_off_and_subscriptions_need_the_catalog(
    stripe_org: StripeOrg,
) -> None:
    status, body = stripe_org.api.get("/integrations/stripe")
    assert status == 200, body
    assert body["integrations"][0]["sync_catalog"] is False
    assert body["integrations"][0]["sync_subscriptions"] is False

    status, body = connect(stripe_org, stripe_org.secret_key, sync_subscriptions=True)
    assert status == 422, body
    assert body["error_details"] == {"sync_subscriptions": ["requires_sync_catalog"]}
    _, listed = stripe_org.api.get("/integrations/stripe")
    assert listed["integrations"][0]["sync_subscriptions"] is False  # nothing changed


def test_one_catalog_goes_to_one_stripe_account(syncing: StripeOrg) -> None:
    status, body = connect(syncing, new_stripe_key(), code="second", sync_catalog=True)
    assert status == 422, body
    assert body["error_details"] == {"sync_catalog": ["already_enabled_on_another_connection"]}


def test_without_catalog_sync_nothing_reaches_stripe(stripe_org: StripeOrg) -> None:
    plan = create_plan(stripe_org)
    assert plan["stripe_sync"] == {
        "status": "not_required",
        "stripe_id": None,
        "stripe_url": None,
        "reason": "catalog_sync_disabled",
        "error": None,
        "synced_at": None,
    }
    assert list(stripe_org.stripe.v1.products.list().data) == []


# -- plans and add-ons -------------------------------------------------------------------


def test_a_plan_becomes_a_product_with_a_recurring_price(syncing: StripeOrg, wait_for: Any) -> None:
    created = create_plan(syncing)
    assert created["stripe_sync"]["status"] == "pending"

    plan = synced(syncing, "plans/pro", wait_for)
    mirror = plan["stripe_sync"]
    assert mirror["stripe_id"].startswith("prod_")
    assert (
        mirror["stripe_url"] == f"https://dashboard.stripe.com/test/products/{mirror['stripe_id']}"
    )
    assert mirror["error"] is None and mirror["synced_at"]

    product = syncing.stripe.v1.products.retrieve(mirror["stripe_id"])
    assert product.name == "Pro Plan"
    assert product.metadata["billow_id"] == plan["lago_id"]
    assert product.metadata["billow_organization_id"] == syncing.id
    assert product.metadata["billow_url"].endswith("/api/v1/plans/pro")
    [price] = prices(syncing.stripe, product.id)
    assert (price.unit_amount, price.currency, price.active) == (4900, "usd", True)
    assert price.recurring is not None
    assert (price.recurring.interval, price.recurring.interval_count) == ("month", 1)


@pytest.mark.parametrize(
    ("interval", "stripe_interval", "count"),
    [("weekly", "week", 1), ("quarterly", "month", 3), ("yearly", "year", 1)],
)
def test_plan_intervals_map_to_stripe_recurrences(
    syncing: StripeOrg, wait_for: Any, interval: str, stripe_interval: str, count: int
) -> None:
    create_plan(syncing, code=interval, interval=interval)
    plan = synced(syncing, f"plans/{interval}", wait_for)
    [price] = prices(syncing.stripe, plan["stripe_sync"]["stripe_id"])
    assert price.recurring is not None
    assert (price.recurring.interval, price.recurring.interval_count) == (stripe_interval, count)


def test_a_new_amount_is_a_new_price_and_the_old_one_is_archived(
    syncing: StripeOrg, wait_for: Any
) -> None:
    create_plan(syncing)
    product_id = synced(syncing, "plans/pro", wait_for)["stripe_sync"]["stripe_id"]
    [first] = prices(syncing.stripe, product_id)

    status, body = syncing.api.put(
        "/plans/pro", json={"plan": {"amount_cents": 5900, "name": "Pro+"}}
    )
    assert status == 200, body
    wait_for(
        lambda: (
            len(prices(syncing.stripe, product_id)) == 2 and synced(syncing, "plans/pro", wait_for)
        )
    )

    [active] = prices(syncing.stripe, product_id, active=True)
    assert active.id != first.id and active.unit_amount == 5900
    assert syncing.stripe.v1.prices.retrieve(first.id).active is False
    assert syncing.stripe.v1.products.retrieve(product_id).name == "Pro+ Plan"

    # A change Stripe's Price does not carry (the description) makes no new Price.
    status, body = syncing.api.put("/plans/pro", json={"plan": {"description": "For teams"}})
    assert status == 200, body
    synced(syncing, "plans/pro", wait_for)
    assert len(prices(syncing.stripe, product_id)) == 2


def test_a_deleted_plan_archives_its_product(syncing: StripeOrg, wait_for: Any) -> None:
    plan = create_plan(syncing)
    product_id = synced(syncing, "plans/pro", wait_for)["stripe_sync"]["stripe_id"]
    status, body = syncing.api.delete("/plans/pro")
    assert status == 200, body
    assert body["plan"]["lago_id"] == plan["lago_id"]
    wait_for(lambda: syncing.stripe.v1.products.retrieve(product_id).active is False)
    [price] = prices(syncing.stripe, product_id)
    assert price.active is False


def test_an_add_on_becomes_a_product_with_a_one_time_price(
    syncing: StripeOrg, wait_for: Any
) -> None:
    status, body = syncing.api.post(
        "/add_ons",
        json={
            "add_on": {
                "name": "10 Seats",
                "code": "seats",
                "amount_cents": 1500,
                "amount_currency": "EUR",
            }
        },
    )
    assert status == 200, body
    add_on = synced(syncing, "add_ons/seats", wait_for)
    product = syncing.stripe.v1.products.retrieve(add_on["stripe_sync"]["stripe_id"])
    assert product.name == "10 Seats Add-on"
    [price] = prices(syncing.stripe, product.id)
    assert (price.unit_amount, price.currency, price.type, price.recurring) == (
        1500,
        "eur",
        "one_time",
        None,
    )

    status, body = syncing.api.delete("/add_ons/seats")
    assert status == 200, body
    wait_for(lambda: syncing.stripe.v1.products.retrieve(product.id).active is False)


# -- coupons ------------------------------------------------------------------------------


def create_coupon(org: Any, code: str, **fields: Any) -> None:
    status, body = org.api.post(
        "/coupons", json={"coupon": {"name": code.title(), "code": code, **fields}}
    )
    assert status == 200, body


def test_coupons_become_stripe_coupons_and_deleting_one_deletes_it(
    syncing: StripeOrg, wait_for: Any
) -> None:
    create_coupon(
        syncing,
        "welcome",
        coupon_type="fixed_amount",
        amount_cents=1000,
        amount_currency="USD",
        frequency="once",
        expiration="no_expiration",
    )
    create_coupon(
        syncing,
        "loyal",
        coupon_type="percentage",
        percentage_rate="12.5",
        frequency="recurring",
        frequency_duration=3,
        expiration="no_expiration",
    )
    create_coupon(
        syncing,
        "partner",
        coupon_type="percentage",
        percentage_rate="20",
        frequency="forever",
        expiration="no_expiration",
    )
    welcome = syncing.stripe.v1.coupons.retrieve(
        synced(syncing, "coupons/welcome", wait_for)["stripe_sync"]["stripe_id"]
    )
    assert (welcome.amount_off, welcome.currency, welcome.duration) == (1000, "usd", "once")
    assert welcome.name == "Welcome"
    loyal = syncing.stripe.v1.coupons.retrieve(
        synced(syncing, "coupons/loyal", wait_for)["stripe_sync"]["stripe_id"]
    )
    assert (loyal.percent_off, loyal.duration, loyal.duration_in_months) == (12.5, "repeating", 3)
    partner_sync = synced(syncing, "coupons/partner", wait_for)["stripe_sync"]
    assert partner_sync["stripe_url"].startswith("https://dashboard.stripe.com/test/coupons/")
    partner = syncing.stripe.v1.coupons.retrieve(partner_sync["stripe_id"])
    assert (partner.percent_off, partner.duration) == (20.0, "forever")

    status, body = syncing.api.delete("/coupons/welcome")
    assert status == 200, body

    def gone() -> bool:
        try:
            syncing.stripe.v1.coupons.retrieve(welcome.id)
        except stripe.InvalidRequestError as error:
            return error.http_status == 404
        return False

    wait_for(gone)


# -- turning sync on later, failures, duplicates ------------------------------------------


def test_turning_sync_on_mirrors_what_already_exists(stripe_org: StripeOrg, wait_for: Any) -> None:
    create_plan(stripe_org)
    create_coupon(
        stripe_org,
        "welcome",
        coupon_type="fixed_amount",
        amount_cents=500,
        amount_currency="USD",
        frequency="once",
        expiration="no_expiration",
    )
    status, body = connect(stripe_org, stripe_org.secret_key, sync_catalog=True)
    assert status == 200, body
    plan = synced(stripe_org, "plans/pro", wait_for)
    coupon = synced(stripe_org, "coupons/welcome", wait_for)
    assert stripe_org.stripe.v1.products.retrieve(plan["stripe_sync"]["stripe_id"]).name == (
        "Pro Plan"
    )
    assert (
        stripe_org.stripe.v1.coupons.retrieve(coupon["stripe_sync"]["stripe_id"]).amount_off == 500
    )


def test_a_refused_sync_is_failed_announced_once_and_resynced(
    local_billow: Any, syncing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """The key is rolled in Stripe's dashboard: the old one stops working, so the sync
    fails with Stripe's error (not retried forever). Once the organization connects the
    new key, the resync mirrors the plan in the same account."""
    key = stripe_config(local_billow, "POST", "/_config/roll_key", {"api_key": syncing.secret_key})[
        "api_key"
    ]
    create_plan(syncing)
    plan = synced(syncing, "plans/pro", wait_for, status="failed")
    assert plan["stripe_sync"]["error"]["code"]
    assert plan["stripe_sync"]["error"]["message"]
    [announced] = wait_for(lambda: webhooks(subscribed, "stripe_sync.failed"))
    assert announced["stripe_sync_error"]["lago_id"] == plan["lago_id"]
    assert announced["stripe_sync_error"]["object_type"] == "plan"

    status, body = connect(syncing, key, sync_catalog=True)
    assert status == 200, body
    status, body = syncing.api.post("/integrations/stripe/stripe/resync")
    assert status == 200, body
    assert body == {"resync": {"requested_count": 1}}
    plan = synced(syncing, "plans/pro", wait_for)
    product = stripe_client(local_billow.stripe_url, key).v1.products.retrieve(
        plan["stripe_sync"]["stripe_id"]
    )
    assert product.name == "Pro Plan"
    assert len(webhooks(subscribed, "stripe_sync.failed")) == 1


def test_resync_needs_a_syncing_connection(stripe_org: StripeOrg) -> None:
    status, body = stripe_org.api.post("/integrations/stripe/stripe/resync")
    assert status == 422, body
    status, body = stripe_org.api.post("/integrations/stripe/nope/resync")
    assert status == 404, body


def test_duplicated_and_concurrent_syncs_make_one_product_and_one_price(
    local_billow: Any, syncing: StripeOrg, wait_for: Any
) -> None:
    plan = create_plan(syncing)
    deps = dependencies()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sync_object(deps, syncing.id, "plan", plan["lago_id"])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    synced(syncing, "plans/pro", wait_for)
    products = list(syncing.stripe.v1.products.list().data)
    assert len(products) == 1
    assert len(prices(syncing.stripe, products[0].id)) == 1


def test_removing_the_connection_stops_syncing(syncing: StripeOrg, wait_for: Any) -> None:
    create_plan(syncing)
    synced(syncing, "plans/pro", wait_for)
    status, body = syncing.api.delete("/integrations/stripe/stripe")
    assert status == 200, body
    create_plan(syncing, code="team")
    _, body = syncing.api.get("/plans/team")
    assert body["plan"]["stripe_sync"]["status"] == "not_required"
    assert len(list(syncing.stripe.v1.products.list().data)) == 1
    # What was mirrored stays as it is, in Stripe and in Billow's record of it.
    _, body = syncing.api.get("/plans/pro")
    assert body["plan"]["stripe_sync"]["status"] == "succeeded"


def test_turning_sync_on_subscribes_an_older_endpoint_to_the_sync_events(
    stripe_org: StripeOrg,
) -> None:
    """A connection made before the sync's events existed: its endpoint in Stripe gets
    them when sync is turned on (the events are then delivered, not only recovered by the
    hourly reconciliation)."""
    [endpoint] = list(stripe_org.stripe.v1.webhook_endpoints.list().data)
    stripe_org.stripe.v1.webhook_endpoints.update(
        endpoint.id, params={"enabled_events": ["payment_intent.succeeded"]}
    )
    status, body = connect(stripe_org, stripe_org.secret_key, sync_catalog=True)
    assert status == 200, body
    events = stripe_org.stripe.v1.webhook_endpoints.retrieve(endpoint.id).enabled_events
    assert {"customer.subscription.deleted", "invoice.paid"} <= set(events)


def test_a_sync_stripe_is_too_busy_for_is_retried_until_it_goes_through(
    local_billow: Any, syncing: StripeOrg, subscribed: Any, wait_for: Any
) -> None:
    """Stripe answers 500 to more attempts than the SDK retries: the message comes back
    after its backoff and the sync goes through, once, with nothing announced."""
    local_billow.wait_idle()  # the catalog backfill is over before Stripe breaks
    stripe_config(
        local_billow,
        "POST",
        "/_config/faults",
        {
            "api_key": syncing.secret_key,
            "path_prefix": "/v1/products",
            "status": "500",
            "count": "6",
        },
    )
    create_plan(syncing)
    plan = synced(syncing, "plans/pro", wait_for)
    assert plan["stripe_sync"]["error"] is None
    assert [p.id for p in syncing.stripe.v1.products.list().data] == [
        plan["stripe_sync"]["stripe_id"]
    ]
    local_billow.wait_idle()
    assert webhooks(subscribed, "stripe_sync.failed") == []
