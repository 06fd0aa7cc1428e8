"""Stripe's hosted pages as a person uses them, in headless Chromium (Playwright): a
customer subscribes through the checkout page, then changes their card and address in
the billing portal, and Billow sees each step."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.billing_helpers import create_plan, payment_methods
from tests.api.conftest import StripeOrg, new_stripe_key, stripe_client
from tests.api.test_stripe_checkout import checkout, new_customer, subscription

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (make test installs Debian's)"
)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_a_customer_subscribes_then_manages_billing_in_stripes_pages(
    local_billow: Any, org: Any, browser_page: Any, wait_for: Any
) -> None:
    done_url = f"{local_billow.api_url}/checkout/completed"
    key = new_stripe_key()
    status, body = org.api.post(
        "/integrations/stripe",
        json={
            "integration": {
                "secret_key": key,
                "sync_catalog": True,
                "sync_subscriptions": True,
                "portal_return_url": done_url,
            }
        },
    )
    assert status == 200, body
    billing = StripeOrg(org, key, stripe_client(local_billow.stripe_url, key))
    create_plan(billing, "pro", amount_cents=4900)
    new_customer(billing)
    status, body = checkout(
        billing,
        checkout={"success_url": done_url, "cancel_url": done_url, "collect_phone_number": True},
        billing_time="anniversary",
    )
    assert status == 200, body
    page = browser_page

    page.goto(body["subscription"]["checkout_url"])
    assert "Pro Plan: 49.00 EUR per month" in page.content()
    page.fill("#phone", "+33 1 23 45 67 89")
    page.check("input[value='4242424242424242']")
    page.click("button[type=submit]")
    page.wait_for_url(done_url + "*")
    wait_for(lambda: subscription(billing)["status"] == "active")
    [first_card] = wait_for(lambda: payment_methods(billing, "acme"))

    status, body = billing.api.get("/customers/acme/portal_url")
    assert status == 200, body
    page.goto(body["customer"]["portal_url"])
    assert page.locator("#invoices tr").count() == 2  # the header and Stripe's first invoice
    page.check("input[value='4242424242424242']")
    page.click("text=Add card")
    page.fill("#address_line1", "5 Avenue Anatole France")
    page.fill("#address_city", "Paris")
    page.fill("#address_postal_code", "75007")
    page.fill("#address_country", "FR")
    page.click("text=Save")
    page.click("#return")
    page.wait_for_url(done_url + "*")

    def changed() -> dict[str, Any] | None:
        customer = billing.api.get("/customers/acme")[1]["customer"]
        methods = payment_methods(billing, "acme")
        default = next((m for m in methods if m["is_default"]), None)
        moved = customer["zipcode"] == "75007" and default and default != first_card
        return customer if moved else None

    customer = wait_for(changed)
    assert (customer["city"], customer["country"]) == ("Paris", "FR")
