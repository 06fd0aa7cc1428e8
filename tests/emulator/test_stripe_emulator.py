"""The local Stripe emulator, driven only through the official SDK and plain HTTP."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
import stripe

from local.stripe_emulator import StripeEmulator
from tests.support import http

T = TypeVar("T")

SUCCEEDS, DECLINED_LATER, NEEDS_3DS = "4242424242424242", "4000000000000341", "4000002760003184"
DECLINED, NO_FUNDS, NEEDS_3DS_OFF_SESSION = (
    "4000000000000002",
    "4000000000009995",
    "4000002500003155",
)


def wait_for(check: Callable[[], T], timeout: float = 5.0) -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class Receiver:
    """A webhook endpoint: records deliveries, answers 500 to the first ``failures``."""

    def __init__(self, failures: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        self.secret = ""  # the endpoint's signing secret, once registered
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.failures
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Delivered events (successful deliveries only), in arrival order."""
        answered = self.requests[self.failures :]
        events = [json.loads(body) for _, body in answered]
        return [e for e in events if event_type in (None, e["type"])]

    def verified(self, event_type: str) -> list[Any]:
        """Delivered events of ``event_type``, each checked against its signature as a
        webhook handler checks it (``stripe.Webhook.construct_event``)."""
        return [
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], self.secret)
            for headers, body in self.requests[self.failures :]
            if json.loads(body)["type"] == event_type
        ]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    emulator = StripeEmulator(port=0)
    yield emulator.start()
    emulator.stop()


def new_key(prefix: str = "sk_test_") -> str:
    return prefix + uuid.uuid4().hex


def sdk(url: str, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": url, "files": url, "connect": url}, max_network_retries=0
    )


class Account:
    """A fresh Stripe account (its own secret key) on the emulator."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = new_key()
        self.client = sdk(url, self.key)
        self.receivers: list[Receiver] = []

    def listen(self, events: list[str] | None = None, failures: int = 0) -> Receiver:
        receiver = Receiver(failures)
        endpoint = self.client.v1.webhook_endpoints.create(
            {"url": receiver.url, "enabled_events": events or ["*"]}
        )
        receiver.secret = endpoint.secret
        self.receivers.append(receiver)
        return receiver

    def customer_with_card(self, card: str = SUCCEEDS) -> tuple[Any, Any]:
        customer = self.client.v1.customers.create({"email": f"{uuid.uuid4().hex}@example.test"})
        payment_method = self.client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        self.client.v1.payment_methods.attach(payment_method.id, {"customer": customer.id})
        return customer, payment_method

    def checkout(self, **params: Any) -> Any:
        return self.client.v1.checkout.sessions.create(params)

    def card(self, number: str, customer: Any | None = None) -> Any:
        """A card payment method, attached to ``customer`` if given (as a saved card is)."""
        payment_method = self.client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            }
        )
        if customer is not None:
            self.client.v1.payment_methods.attach(payment_method.id, {"customer": customer.id})
        return payment_method

    def charge(
        self, customer: Any, payment_method: Any, key: str | None = None, **params: Any
    ) -> Any:
        """Charge an invoice the way Billow does: confirmed at once, off session."""
        return self.client.v1.payment_intents.create(
            {
                "amount": 2500,
                "currency": "eur",
                "customer": customer.id,
                "payment_method": payment_method.id,
                "payment_method_types": ["card"],
                "confirm": True,
                "off_session": True,
                "error_on_requires_action": True,
                "description": "Acme - Invoice ACME-001",
                "metadata": {"lago_invoice_id": "inv_1", "lago_payment_id": "pay_1"},
                **params,
            },
            {"idempotency_key": key} if key else {},
        )

    def config(self, method: str, path: str, form: dict[str, str] | None = None) -> Any:
        """Call one of the emulator's ``/_config`` endpoints; its JSON answer."""
        status, _, body = http(method, self.url + path, form)
        assert status == 200, body
        return json.loads(body)

    def request_counts(self) -> dict[str, int]:
        answer = self.config("GET", "/_config/requests?api_key=" + self.key)
        return answer["by_endpoint"]  # type: ignore[no-any-return]


@pytest.fixture
def make_account(emulator_url: str) -> Iterator[Callable[[], Account]]:
    """Fresh accounts for one test; their webhook receivers close afterwards."""
    made: list[Account] = []

    def make() -> Account:
        made.append(Account(emulator_url))
        return made[-1]

    yield make
    for receiver in (r for account in made for r in account.receivers):
        receiver.close()


@pytest.fixture
def account(make_account: Callable[[], Account]) -> Account:
    return make_account()


def payment_session(account: Account, **params: Any) -> Any:
    line_item = {
        "price_data": {"currency": "eur", "unit_amount": 1250, "product_data": {"name": "INV-1"}},
        "quantity": 2,
    }
    return account.checkout(mode="payment", line_items=[line_item], **params)


# 1. API keys and accounts ------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "pk_test_" + "a" * 24,
        "sk_live_" + "b" * 24,
        "sk_test_short",
        "not-a-key",
        "rk_live_" + "c" * 24,
    ],
)
def test_keys_other_than_test_secret_keys_are_refused(emulator_url: str, key: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        sdk(emulator_url, key).v1.customers.list()
    assert caught.value.http_status == 401
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"


def test_invalid_key_is_masked_like_stripe(emulator_url: str) -> None:
    key = "sk_live_" + "x" * 20 + "wxyz"
    with pytest.raises(stripe.AuthenticationError) as caught:
        sdk(emulator_url, key).v1.customers.list()
    assert caught.value.user_message == "Invalid API Key provided: sk_live_" + "*" * 20 + "wxyz"


def test_missing_key_is_401_json(emulator_url: str) -> None:
    status, _, body = http("GET", f"{emulator_url}/v1/customers")
    assert status == 401
    assert json.loads(body)["error"]["message"].startswith("You did not provide an API key")


def test_restricted_test_keys_are_accepted(emulator_url: str) -> None:
    assert sdk(emulator_url, new_key("rk_test_")).v1.customers.list().object == "list"


# 2. Checkout Sessions API ---------------------------------------------------------------


def test_setup_session_has_stripes_shape(account: Account) -> None:
    customer, _ = account.customer_with_card()
    session = account.checkout(
        mode="setup",
        customer=customer.id,
        success_url="https://billow.test/ok",
        metadata={"lago_customer_id": "c1"},
        client_reference_id="ref-1",
    )
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert session.status == "open" and session.payment_status == "no_payment_required"
    assert session.url == f"{account.url}/checkout/{session.id}"
    assert session.customer == customer.id and session.livemode is False
    assert session.setup_intent is None and session.payment_intent is None
    assert session.metadata.to_dict() == {"lago_customer_id": "c1"}
    assert session.expires_at - session.created == 24 * 3600
    assert session.payment_method_types == ["card"]
    for field in ("success_url", "cancel_url", "amount_total", "currency", "customer_details"):
        assert field in session


def test_payment_session_totals_line_items(account: Account) -> None:
    expires_at = int(time.time()) + 3600
    session = payment_session(account, expires_at=expires_at, currency="EUR")
    assert (session.amount_total, session.currency, session.payment_status) == (
        2500,
        "eur",
        "unpaid",
    )
    assert session.expires_at == expires_at
    retrieved = account.client.v1.checkout.sessions.retrieve(session.id)
    assert retrieved.to_dict() == session.to_dict()
    listed = account.client.v1.checkout.sessions.list({"status": "open", "limit": 100})
    assert session.id in [s.id for s in listed.data]


def test_expiring_a_session_emits_event(account: Account) -> None:
    receiver = account.listen(["checkout.session.expired"])
    session = payment_session(account)
    expired = account.client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    (event,) = wait_for(lambda: receiver.events("checkout.session.expired"))
    assert event["data"]["object"]["id"] == session.id
    with pytest.raises(stripe.InvalidRequestError):
        account.client.v1.checkout.sessions.expire(session.id)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "mode"),
        ({"mode": "teleport"}, "mode"),
        ({"mode": "payment"}, "line_items"),
        ({"mode": "setup"}, "currency"),
        ({"mode": "setup", "currency": "eur", "line_items": [{"quantity": 1}]}, "line_items"),
        ({"mode": "setup", "customer": "cus_missing"}, "customer"),
        ({"mode": "setup", "currency": "eur", "success_url": "nope"}, "success_url"),
        ({"mode": "setup", "currency": "eur", "expires_at": 1}, "expires_at"),
        ({"mode": "setup", "currency": "eur", "colour": "red"}, "colour"),
        ({"mode": "payment", "line_items": [{"quantity": 1}]}, "line_items[0][price_data]"),
        (
            {
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {"currency": "eur", "product_data": {"name": "x"}},
                        "quantity": 1,
                    }
                ],
            },
            "line_items[0][price_data][unit_amount]",
        ),
    ],
)
def test_session_validation_names_the_param(
    account: Account, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.checkout(**params)
    assert caught.value.http_status == 400
    assert caught.value.param == param


# 3. Hosted checkout page ---------------------------------------------------------------


def test_page_offers_the_three_test_cards(account: Account) -> None:
    setup = account.checkout(mode="setup", currency="eur")
    status, headers, page = http("GET", setup.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "Save a card" in page and "Confirm" in page
    for card in (SUCCEEDS, DECLINED_LATER, NEEDS_3DS):
        assert f'type="radio" name="card" value="{card}"' in page
    _, _, page = http("GET", payment_session(account).url)
    assert "25.00 EUR" in page


def test_setup_checkout_saves_the_card(account: Account) -> None:
    receiver = account.listen()
    customer = account.client.v1.customers.create()
    session = account.checkout(
        mode="setup",
        customer=customer.id,
        success_url="https://billow.test/done?session={CHECKOUT_SESSION_ID}",
        setup_intent_data={"metadata": {"lago_customer_id": "c1"}},
    )
    status, headers, _ = http("POST", session.url, {"card": SUCCEEDS})
    assert status == 303
    assert headers["Location"] == f"https://billow.test/done?session={session.id}"

    done = account.client.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete" and done.setup_intent.startswith("seti_")
    setup_intent = account.client.v1.setup_intents.retrieve(done.setup_intent)
    assert (setup_intent.status, setup_intent.customer, setup_intent.usage) == (
        "succeeded",
        customer.id,
        "off_session",
    )
    assert setup_intent.metadata.to_dict() == {"lago_customer_id": "c1"}
    cards = account.client.v1.customers.payment_methods.list(customer.id)
    assert [pm.id for pm in cards.data] == [setup_intent.payment_method]

    wait_for(lambda: receiver.events("checkout.session.completed"))
    types = [e["type"] for e in receiver.events()]
    assert types.index("setup_intent.succeeded") < types.index("checkout.session.completed")
    assert "payment_method.attached" in types

    status, _, page = http("POST", session.url, {"card": SUCCEEDS})
    assert status == 409 and "already complete" in page


def test_setup_checkout_with_3ds_fails_then_passes(account: Account) -> None:
    receiver = account.listen(["setup_intent.setup_failed", "checkout.session.completed"])
    session = account.checkout(mode="setup", currency="eur")

    status, _, page = http("POST", session.url, {"card": NEEDS_3DS})
    assert status == 200 and "Fail authentication" in page
    status, _, page = http("POST", session.url + "/authenticate", {"outcome": "fail"})
    assert status == 402 and "Authentication failed" in page
    (failed,) = wait_for(lambda: receiver.events("setup_intent.setup_failed"))
    assert failed["data"]["object"]["last_setup_error"]["code"] == (
        "setup_intent_authentication_failure"
    )
    assert account.client.v1.checkout.sessions.retrieve(session.id).status == "open"

    http("POST", session.url, {"card": NEEDS_3DS})
    status, _, page = http("POST", session.url + "/authenticate", {"outcome": "success"})
    assert status == 200 and "Card saved" in page  # no success_url: the page says done
    (completed,) = wait_for(lambda: receiver.events("checkout.session.completed"))
    assert completed["data"]["object"]["status"] == "complete"
    assert completed["data"]["object"]["customer"].startswith("cus_")


def test_payment_checkout_declined_then_paid(account: Account) -> None:
    receiver = account.listen()
    session = payment_session(
        account,
        success_url="https://billow.test/paid",
        payment_intent_data={
            "description": "Invoice INV-1",
            "setup_future_usage": "off_session",
            "metadata": {"lago_invoice_id": "inv_1"},
        },
    )
    status, _, page = http("POST", session.url, {"card": DECLINED_LATER})
    assert status == 402 and "Your card was declined." in page
    wait_for(lambda: receiver.events("payment_intent.payment_failed"))
    assert account.client.v1.checkout.sessions.retrieve(session.id).status == "open"

    status, headers, _ = http("POST", session.url, {"card": SUCCEEDS})
    assert (status, headers["Location"]) == (303, "https://billow.test/paid")
    (completed,) = wait_for(lambda: receiver.events("checkout.session.completed"))
    paid = completed["data"]["object"]
    assert (paid["status"], paid["payment_status"], paid["amount_total"]) == (
        "complete",
        "paid",
        2500,
    )

    payment_intent = account.client.v1.payment_intents.retrieve(paid["payment_intent"])
    assert (payment_intent.status, payment_intent.amount, payment_intent.currency) == (
        "succeeded",
        2500,
        "eur",
    )
    assert payment_intent.description == "Invoice INV-1"
    assert payment_intent.metadata.to_dict() == {"lago_invoice_id": "inv_1"}
    assert payment_intent.setup_future_usage == "off_session"
    saved = account.client.v1.payment_methods.retrieve(payment_intent.payment_method)
    assert saved.customer == paid["customer"]  # setup_future_usage keeps the card
    types = [e["type"] for e in receiver.events()]
    assert types.index("payment_intent.succeeded") < types.index("checkout.session.completed")


def test_payment_checkout_with_3ds(account: Account) -> None:
    receiver = account.listen(["payment_intent.payment_failed"])
    session = payment_session(account, success_url="https://billow.test/paid")
    http("POST", session.url, {"card": NEEDS_3DS})
    status, _, page = http("POST", session.url + "/authenticate", {"outcome": "fail"})
    assert status == 402 and "Authentication failed" in page
    (failed,) = wait_for(lambda: receiver.events("payment_intent.payment_failed"))
    assert failed["data"]["object"]["last_payment_error"]["code"] == (
        "payment_intent_authentication_failure"
    )
    assert failed["data"]["object"]["status"] == "requires_payment_method"

    status, _, page = http("POST", session.url, {"card": NEEDS_3DS})
    assert status == 200 and "Authenticate" in page
    assert "Authenticate" in http("GET", session.url)[2]  # still waiting on a reload
    status, _, _ = http("POST", session.url + "/authenticate", {"outcome": "success"})
    assert status == 303
    done = account.client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")


def test_page_errors(account: Account) -> None:
    status, headers, page = http("GET", f"{account.url}/checkout/cs_test_nope")
    assert status == 404 and headers["Content-Type"].startswith("text/html")
    session = payment_session(account)
    account.client.v1.checkout.sessions.expire(session.id)
    status, _, page = http("POST", f"{account.url}/checkout/{session.id}", {"card": SUCCEEDS})
    assert status == 410 and "expired" in page


def test_payment_link_checkout_pays_the_invoice(account: Account) -> None:
    """Lago's invoice payment link: one line for the amount due, the PaymentIntent's data
    carried over, the card saved for later off-session charges."""
    receiver = account.listen(
        ["payment_intent.succeeded", "payment_intent.payment_failed", "checkout.session.completed"]
    )
    customer = account.client.v1.customers.create({"email": "ada@example.test"})
    session = account.checkout(
        mode="payment",
        customer=customer.id,
        line_items=[
            {
                "quantity": 1,
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 12345,
                    "product_data": {"name": "ACME-007"},
                },
            }
        ],
        payment_method_types=["card"],
        success_url="https://billow.test/paid",
        expires_at=int(time.time()) + 3600,
        payment_intent_data={
            "description": "Acme - Invoice ACME-007",
            "setup_future_usage": "off_session",
            "metadata": {"lago_invoice_id": "inv_7", "payment_type": "one-time"},
        },
        metadata={"lago_invoice_id": "inv_7"},
    )
    assert (session.mode, session.status, session.payment_status) == ("payment", "open", "unpaid")
    assert (session.amount_total, session.currency) == (12345, "eur")
    status, _, page = http("GET", session.url)
    assert status == 200 and "Pay 123.45 EUR" in page and "ACME-007" in page

    status, _, page = http("POST", session.url, {"card": NO_FUNDS})
    assert status == 402 and "Your card has insufficient funds." in page
    (failed,) = wait_for(lambda: receiver.verified("payment_intent.payment_failed"))
    assert failed.data.object.last_payment_error.decline_code == "insufficient_funds"
    still_open = account.client.v1.checkout.sessions.retrieve(session.id)
    assert still_open.status == "open" and still_open.payment_status == "unpaid"
    assert still_open.payment_intent == failed.data.object.id

    status, headers, _ = http("POST", session.url, {"card": SUCCEEDS})
    assert (status, headers["Location"]) == (303, "https://billow.test/paid")
    done = account.client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status, done.payment_intent) == (
        "complete",
        "paid",
        still_open.payment_intent,
    )
    (succeeded,) = wait_for(lambda: receiver.verified("payment_intent.succeeded"))
    paid = succeeded.data.object
    assert (paid.id, paid.amount, paid.customer) == (done.payment_intent, 12345, customer.id)
    assert paid.metadata.to_dict() == {"lago_invoice_id": "inv_7", "payment_type": "one-time"}
    (completed,) = wait_for(lambda: receiver.verified("checkout.session.completed"))
    assert completed.data.object.payment_intent == paid.id
    assert completed.data.object.metadata.lago_invoice_id == "inv_7"
    saved = account.client.v1.customers.payment_methods.list(customer.id).data
    assert [pm.id for pm in saved] == [paid.payment_method]

    # The double-charge guard expires the link once the invoice is paid.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.checkout.sessions.expire(session.id)
    assert caught.value.user_message == (
        'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
        "Session has a status of `complete`."
    )


def test_expiring_a_session_cancels_its_failed_attempt(account: Account) -> None:
    receiver = account.listen(["payment_intent.canceled", "checkout.session.expired"])
    customer = account.client.v1.customers.create()
    session = payment_session(account, customer=customer.id)
    status, _, _ = http("POST", session.url, {"card": DECLINED_LATER})
    assert status == 402
    expired = account.client.v1.checkout.sessions.expire(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    (canceled,) = wait_for(lambda: receiver.verified("payment_intent.canceled"))
    assert canceled.data.object.id == expired.payment_intent
    assert canceled.data.object.cancellation_reason == "abandoned"
    wait_for(lambda: receiver.events("checkout.session.expired"))
    status, _, page = http("POST", f"{account.url}/checkout/{session.id}", {"card": SUCCEEDS})
    assert status == 410 and "expired" in page
    retrieved = account.client.v1.checkout.sessions.retrieve(session.id)
    assert retrieved.status == "expired" and retrieved.payment_status == "unpaid"


# 4. WebhookEndpoint API and delivery ------------------------------------------------------


def test_webhook_endpoint_crud(account: Account) -> None:
    endpoints = account.client.v1.webhook_endpoints
    created = endpoints.create(
        {
            "url": "https://billow.test/hook",
            "enabled_events": ["payment_intent.succeeded", "setup_intent.succeeded"],
            "api_version": "2024-06-20",
            "description": "billow",
            "metadata": {"org": "o1"},
        }
    )
    assert created.id.startswith("we_") and created.secret.startswith("whsec_")
    assert (created.object, created.status, created.api_version) == (
        "webhook_endpoint",
        "enabled",
        "2024-06-20",
    )
    retrieved = endpoints.retrieve(created.id)
    assert "secret" not in retrieved and retrieved.url == "https://billow.test/hook"

    updated = endpoints.update(
        created.id,
        {"url": "https://billow.test/v2", "enabled_events": ["*"], "disabled": True},
    )
    assert (updated.url, updated.enabled_events, updated.status) == (
        "https://billow.test/v2",
        ["*"],
        "disabled",
    )
    assert [e.id for e in endpoints.list().data] == [created.id]
    deleted = endpoints.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "webhook_endpoint", True)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        endpoints.retrieve(created.id)
    assert caught.value.http_status == 404


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"enabled_events": ["*"]}, "url"),
        ({"url": "https://billow.test/hook"}, "enabled_events"),
        ({"url": "ftp://billow.test", "enabled_events": ["*"]}, "url"),
        ({"url": "https://billow.test", "enabled_events": ["Not An Event"]}, "enabled_events[0]"),
    ],
)
def test_webhook_endpoint_validation(account: Account, params: dict[str, Any], param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.webhook_endpoints.create(params)
    assert caught.value.param == param


def test_webhook_endpoints_are_per_account(make_account: Callable[[], Account]) -> None:
    alice, bob = make_account(), make_account()
    endpoint = alice.client.v1.webhook_endpoints.create(
        {"url": "https://alice.test/hook", "enabled_events": ["*"]}
    )
    assert bob.client.v1.webhook_endpoints.list().data == []
    for call in (
        lambda: bob.client.v1.webhook_endpoints.retrieve(endpoint.id),
        lambda: bob.client.v1.webhook_endpoints.update(endpoint.id, {"disabled": True}),
        lambda: bob.client.v1.webhook_endpoints.delete(endpoint.id),
    ):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            call()
        assert caught.value.http_status == 404
    assert alice.client.v1.webhook_endpoints.retrieve(endpoint.id).status == "enabled"


def test_events_are_signed_and_stay_in_their_account(
    make_account: Callable[[], Account],
) -> None:
    alice, bob = make_account(), make_account()
    alice_hook, bob_hook = alice.listen(), bob.listen(["customer.created"])
    alices = alice.client.v1.customers.create(options={"idempotency_key": "alice-1"})
    bobs = bob.client.v1.customers.create()

    (event,) = wait_for(lambda: alice_hook.events("customer.created"))
    headers, body = alice_hook.requests[0]
    assert headers["Content-Type"].startswith("application/json")
    verified = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], alice_hook.secret)
    assert verified.id == event["id"] and verified.type == "customer.created"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], bob_hook.secret)
    assert event["id"].startswith("evt_") and event["object"] == "event"
    assert event["livemode"] is False and event["api_version"]
    assert event["pending_webhooks"] == 1 and isinstance(event["created"], int)
    assert event["request"]["id"].startswith("req_")
    assert event["request"]["idempotency_key"] == "alice-1"
    assert event["data"]["object"]["id"] == alices.id

    wait_for(lambda: bob_hook.events("customer.created"))
    assert [e["data"]["object"]["id"] for e in bob_hook.events()] == [bobs.id]
    listed = [e.data.object.id for e in bob.client.v1.events.list({"limit": 100}).data]
    assert listed == [bobs.id]


def test_delivery_filters_by_type_and_skips_disabled(account: Account) -> None:
    updates, disabled = account.listen(["customer.updated"]), account.listen()
    endpoint_id = account.client.v1.webhook_endpoints.list().data[0].id
    account.client.v1.webhook_endpoints.update(endpoint_id, {"disabled": True})
    customer = account.client.v1.customers.create()
    account.client.v1.customers.update(customer.id, {"name": "Ada"})
    (event,) = wait_for(updates.events)
    assert event["type"] == "customer.updated" and event["data"]["object"]["name"] == "Ada"
    assert disabled.requests == []


def test_failed_deliveries_are_retried_in_order(account: Account) -> None:
    receiver = account.listen(["customer.created"], failures=2)
    created = [account.client.v1.customers.create().id for _ in range(3)]
    wait_for(lambda: len(receiver.events()) == 3)
    assert [e["data"]["object"]["id"] for e in receiver.events()] == created
    assert len(receiver.requests) == 5


def test_emitted_objects_are_complete(account: Account) -> None:
    receiver = account.listen()
    customer, payment_method = account.customer_with_card()
    account.client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": payment_method.id}}
    )
    account.client.v1.payment_intents.create(
        {
            "amount": 700,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": payment_method.id,
            "confirm": True,
            "off_session": True,
        }
    )
    account.client.v1.payment_methods.detach(payment_method.id)
    wait_for(lambda: len(receiver.events("customer.updated")) == 2)
    by_type = {e["type"]: e["data"] for e in receiver.events()}
    assert by_type["customer.created"]["object"]["id"] == customer.id
    assert by_type["payment_method.attached"]["object"]["customer"] == customer.id
    succeeded = by_type["payment_intent.succeeded"]["object"]
    assert succeeded["status"] == "succeeded" and isinstance(succeeded["latest_charge"], str)
    detached = by_type["payment_method.detached"]
    assert detached["object"]["id"] == payment_method.id and detached["object"]["customer"] is None
    assert detached["previous_attributes"] == {"customer": customer.id}
    updates = [e["data"]["object"] for e in receiver.events("customer.updated")]
    defaults = [u["invoice_settings"]["default_payment_method"] for u in updates]
    assert defaults == [payment_method.id, None]  # detaching the default clears it


# 4b. The event API as reconciliation reads it, and dropped deliveries ----------------------


def event_ids(listing: Any) -> list[str]:
    return [event.id for event in listing.data]


def test_events_are_listed_newest_first_per_account_and_paged(
    make_account: Callable[[], Account],
) -> None:
    alice, bob = make_account(), make_account()
    customers = [alice.client.v1.customers.create().id for _ in range(5)]
    bob.client.v1.customers.create()
    events = alice.client.v1.events
    newest_first = events.list()
    assert [e.data.object.id for e in newest_first.data] == customers[::-1]
    assert newest_first.has_more is False and "total_count" not in newest_first
    ids = event_ids(newest_first)

    first = events.list({"limit": 2})
    assert (event_ids(first), first.has_more) == (ids[:2], True)
    second = events.list({"limit": 2, "starting_after": ids[1]})
    assert (event_ids(second), second.has_more) == (ids[2:4], True)
    last = events.list({"limit": 2, "starting_after": ids[3]})
    assert (event_ids(last), last.has_more) == (ids[4:], False)
    assert [e.id for e in events.list({"limit": 2}).auto_paging_iter()] == ids
    before = events.list({"limit": 2, "ending_before": ids[3]})
    assert (event_ids(before), before.has_more) == (ids[1:3], True)

    assert len(bob.client.v1.events.list().data) == 1
    with pytest.raises(stripe.InvalidRequestError) as caught:
        bob.client.v1.events.retrieve(ids[0])
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        bob.client.v1.events.list({"starting_after": ids[0]})
    assert caught.value.param == "starting_after"
    assert caught.value.user_message == f"No such event: '{ids[0]}'"


def test_events_are_filtered_by_type_and_types(account: Account) -> None:
    client = account.client.v1
    customer = client.customers.create()
    client.customers.update(customer.id, {"name": "Ada"})
    product = client.products.create({"name": "Seat"})
    client.customers.delete(customer.id)
    other = client.customers.create()

    def types(**params: Any) -> list[str]:
        return [event.type for event in client.events.list(params).data]

    assert types(type="customer.updated") == ["customer.updated"]
    assert types(type="customer.*") == [
        "customer.created",
        "customer.deleted",
        "customer.updated",
        "customer.created",
    ]
    listed = client.events.list({"types": ["customer.deleted", "product.created"]}).data
    assert [(e.type, e.data.object.id) for e in listed] == [
        ("customer.deleted", customer.id),
        ("product.created", product.id),
    ]
    # A cursor keeps its place in the history even when it does not match the filter.
    updated = client.events.list({"type": "customer.updated"}).data[0]
    after = client.events.list({"type": "customer.created", "starting_after": updated.id})
    assert [e.data.object.id for e in after.data] == [customer.id]
    assert other.id not in [e.data.object.id for e in after.data]

    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.events.list({"type": "customer.created", "types": ["customer.updated"]})
    assert caught.value.param == "types"
    for params, param in (({"limit": 101}, "limit"), ({"since": 1}, "since")):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.events.list(params)
        assert caught.value.param == param


def test_events_are_filtered_by_creation_time(account: Account) -> None:
    client = account.client.v1
    earlier = [client.customers.create().id for _ in range(2)]
    last_earlier = max(e.created for e in client.events.list().data)
    wait_for(lambda: time.time() >= last_earlier + 1, timeout=2)
    later = [client.customers.create().id for _ in range(2)]
    first_later = min(e.created for e in client.events.list({"limit": 2}).data)
    assert first_later > last_earlier

    def objects(created: Any) -> list[str]:
        listing = client.events.list({"created": created})
        return [event.data.object.id for event in listing.data]

    assert objects({"gte": first_later}) == later[::-1]
    assert objects({"gt": last_earlier}) == later[::-1]
    assert objects({"lt": first_later}) == earlier[::-1]
    assert objects({"lte": last_earlier}) == earlier[::-1]
    assert objects({"gt": last_earlier, "lt": first_later}) == []
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.events.list({"created": {"after": 1}})
    assert caught.value.param == "created[after]"


def drop_deliveries(account: Account, count: int, event_type: str | None = None) -> None:
    form = {"api_key": account.key, "count": str(count)}
    account.config(
        "POST",
        "/_config/drop_deliveries",
        form | ({"event_type": event_type} if event_type else {}),
    )


def test_dropped_deliveries_are_never_sent_but_the_events_exist(account: Account) -> None:
    receiver = account.listen(["customer.created", "customer.updated"])
    second = account.listen(["customer.created"])
    drop_deliveries(account, 2)
    client = account.client.v1
    lost = client.customers.create()  # dropped, for both endpoints at once
    client.customers.update(lost.id, {"name": "Ada"})  # dropped
    client.products.create({"name": "Seat"})  # no endpoint takes it: not counted
    kept = client.customers.create()
    wait_for(lambda: receiver.events() and second.events())
    assert [e["data"]["object"]["id"] for e in receiver.events()] == [kept.id]
    assert [e["data"]["object"]["id"] for e in second.events()] == [kept.id]

    listed = client.events.list().data
    assert [e.type for e in listed] == [
        "customer.created",
        "product.created",
        "customer.updated",
        "customer.created",
    ]
    dropped = [listed[2].id, listed[3].id]
    assert client.events.retrieve(dropped[1]).data.object.id == lost.id
    assert [client.events.retrieve(i).pending_webhooks for i in dropped] == [1, 2]
    assert wait_for(lambda: event_ids(client.events.list({"delivery_success": False})) == dropped)
    assert event_ids(client.events.list({"delivery_success": True})) == [
        listed[0].id,
        listed[1].id,
    ]


def test_dropping_one_event_type(account: Account) -> None:
    receiver = account.listen()
    drop_deliveries(account, 1, "customer.updated")
    customer = account.client.v1.customers.create()
    account.client.v1.customers.update(customer.id, {"name": "Dropped"})
    account.client.v1.customers.update(customer.id, {"name": "Sent"})
    wait_for(lambda: len(receiver.events()) == 2)
    delivered = [(e["type"], e["data"]["object"]["name"]) for e in receiver.events()]
    assert delivered == [("customer.created", None), ("customer.updated", "Sent")]

    drop_deliveries(account, 5, "customer.updated")
    drop_deliveries(account, 0, "customer.updated")  # a new drop replaces the old one
    account.client.v1.customers.update(customer.id, {"name": "Sent again"})
    wait_for(lambda: len(receiver.events()) == 3)


@pytest.mark.parametrize(
    "form", [{"count": "x"}, {"count": "1", "event_type": "Not a type"}, {"api_key": "sk_x"}]
)
def test_drop_parameters_are_checked(account: Account, form: dict[str, str]) -> None:
    status, _, _ = http(
        "POST", f"{account.url}/_config/drop_deliveries", {"api_key": account.key, **form}
    )
    assert status == 400


# 5. Idempotency ----------------------------------------------------------------------------


def test_idempotent_retry_replays_without_creating_again(account: Account) -> None:
    receiver = account.listen(["customer.created"])
    email = f"{uuid.uuid4().hex}@example.test"
    first = account.client.v1.customers.create({"email": email}, {"idempotency_key": "k1"})
    again = account.client.v1.customers.create({"email": email}, {"idempotency_key": "k1"})
    assert again.id == first.id
    assert len(account.client.v1.customers.list({"email": email}).data) == 1

    headers = {"Authorization": f"Bearer {account.key}", "Idempotency-Key": "k1"}
    status, replay_headers, body = http(
        "POST", f"{account.url}/v1/customers", {"email": email}, headers
    )
    assert (status, replay_headers["Idempotent-Replayed"]) == (200, "true")
    assert json.loads(body)["id"] == first.id
    # Delivery is in order, so once a later event arrives any duplicate would have too.
    sentinel = account.client.v1.customers.create()
    wait_for(lambda: len(receiver.events()) >= 2)
    assert [e["data"]["object"]["id"] for e in receiver.events()] == [first.id, sentinel.id]

    other = Account(account.url)  # keys are per account
    assert other.client.v1.customers.create({}, {"idempotency_key": "k1"}).id != first.id


def test_reusing_a_key_differently_is_an_idempotency_error(account: Account) -> None:
    account.client.v1.customers.create({"name": "A"}, {"idempotency_key": "k2"})
    with pytest.raises(stripe.IdempotencyError):
        account.client.v1.customers.create({"name": "B"}, {"idempotency_key": "k2"})
    with pytest.raises(stripe.IdempotencyError):
        account.client.v1.products.create({"name": "A"}, {"idempotency_key": "k2"})


def test_refused_requests_are_not_saved_but_declines_are_replayed(account: Account) -> None:
    """Stripe saves nothing for a request refused before it ran, and replays what ran."""
    headers = {"Authorization": f"Bearer {account.key}", "Idempotency-Key": "k3"}
    url = f"{account.url}/v1/customers"
    status, _, _ = http("POST", url, {"email": "not-an-email", "invoice_settings": "x"}, headers)
    assert status == 400
    status, replay_headers, _ = http("POST", url, {"name": "Fixed"}, headers)
    assert status == 200 and "Idempotent-Replayed" not in replay_headers

    customer = account.client.v1.customers.create({"name": "Declined"})
    declined = {
        "amount": "500",
        "currency": "usd",
        "customer": customer.id,
        "payment_method": "pm_card_chargeDeclined",
        "confirm": "true",
    }
    headers["Idempotency-Key"] = "k4"
    status, _, first = http("POST", f"{account.url}/v1/payment_intents", declined, headers)
    status_again, replay_headers, again = http(
        "POST", f"{account.url}/v1/payment_intents", declined, headers
    )
    assert (status, status_again, again) == (402, 402, first)
    assert replay_headers["Idempotent-Replayed"] == "true"


# 6. Real booleans ---------------------------------------------------------------------------


def test_booleans_are_json_booleans(account: Account) -> None:
    client = account.client.v1
    product = client.products.create({"name": "Seat"})
    archived = client.products.update(product.id, {"active": False})
    assert archived.active is False
    assert product.id in [p.id for p in client.products.list({"active": False, "limit": 100}).data]
    plan = client.plans.create(
        {"amount": 100, "currency": "eur", "interval": "month", "product": product.id}
    )
    assert client.plans.update(plan.id, {"active": False}).active is False
    coupon = client.coupons.create({"id": uuid.uuid4().hex, "duration": "once", "percent_off": 10})
    assert coupon.valid is True and coupon.livemode is False
    customer, payment_method = account.customer_with_card()
    assert customer.livemode is False and customer.delinquent is False
    assert payment_method.card.three_d_secure_usage.supported is True
    assert (
        client.webhook_endpoints.create(
            {"url": "https://billow.test/hook", "enabled_events": ["*"]}
        ).livemode
        is False
    )
    raw = http(
        "GET",
        f"{account.url}/v1/products/{product.id}",
        headers={"Authorization": f"Bearer {account.key}"},
    )[2]
    assert '"active": false' in raw


# 7. PaymentIntents ---------------------------------------------------------------------------


def test_invoice_charge_succeeds_once_per_idempotency_key(account: Account) -> None:
    receiver = account.listen(["payment_intent.succeeded", "charge.succeeded"])
    customer, card = account.customer_with_card()
    paid = account.charge(customer, card, key="payment-1")
    assert (paid.status, paid.amount_received, paid.customer) == ("succeeded", 2500, customer.id)
    assert paid.metadata.to_dict() == {"lago_invoice_id": "inv_1", "lago_payment_id": "pay_1"}
    assert paid.latest_charge.startswith("ch_") and paid.last_payment_error is None

    again = account.charge(customer, card, key="payment-1")
    assert again.id == paid.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    later = account.charge(customer, card, key="payment-2")
    # Delivery is in order: once the later charge's event is in, a duplicate would be too.
    wait_for(lambda: len(receiver.events("payment_intent.succeeded")) == 2)
    events = receiver.verified("payment_intent.succeeded")
    assert [e.data.object.id for e in events] == [paid.id, later.id]
    assert events[0].data.object.metadata.to_dict()["lago_invoice_id"] == "inv_1"
    assert events[0].request.idempotency_key == "payment-1"
    types = [e["type"] for e in receiver.events()]
    assert types.index("charge.succeeded") < types.index("payment_intent.succeeded")

    listed = account.client.v1.payment_intents.list({"customer": customer.id})
    assert [pi.id for pi in listed.data] == [later.id, paid.id]
    retrieved = account.client.v1.payment_intents.retrieve(paid.id)
    assert retrieved.status == "succeeded" and retrieved.description == "Acme - Invoice ACME-001"
    charge = account.client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.amount_captured, charge.paid, charge.payment_intent) == (2500, True, paid.id)
    assert charge.payment_method_details.card.last4 == "4242"


def test_payment_intents_are_listed_per_account(make_account: Callable[[], Account]) -> None:
    alice, bob = make_account(), make_account()
    customer, card = alice.customer_with_card()
    paid = alice.charge(customer, card)
    assert [pi.id for pi in alice.client.v1.payment_intents.list().data] == [paid.id]
    assert bob.client.v1.payment_intents.list().data == []


@pytest.mark.parametrize(
    ("card", "decline_code", "message"),
    [
        (DECLINED, "generic_decline", "Your card was declined."),
        (NO_FUNDS, "insufficient_funds", "Your card has insufficient funds."),
        (DECLINED_LATER, "generic_decline", "Your card was declined."),
    ],
)
def test_declined_invoice_charges_are_card_errors(
    account: Account, card: str, decline_code: str, message: str
) -> None:
    receiver = account.listen(["payment_intent.payment_failed", "charge.failed"])
    customer = account.client.v1.customers.create()
    # 0002 and 9995 are refused on attach already; 0341 is saved, then declined.
    payment_method = account.card(card, customer if card == DECLINED_LATER else None)
    with pytest.raises(stripe.CardError) as caught:
        account.charge(customer, payment_method, key=f"decline-{card}")
    assert (caught.value.http_status, caught.value.code) == (402, "card_declined")
    error = caught.value.json_body["error"]
    assert (error["type"], error["decline_code"], error["message"]) == (
        "card_error",
        decline_code,
        message,
    )
    assert error["charge"].startswith("ch_") and error["payment_method"]["id"] == payment_method.id
    failed = error["payment_intent"]
    assert (failed["status"], failed["payment_method"]) == ("requires_payment_method", None)
    assert failed["last_payment_error"]["decline_code"] == decline_code
    assert failed["metadata"]["lago_invoice_id"] == "inv_1"

    (event,) = wait_for(lambda: receiver.verified("payment_intent.payment_failed"))
    assert event.data.object.id == failed["id"]
    assert event.data.object.last_payment_error.code == "card_declined"
    assert event.data.object.metadata.lago_payment_id == "pay_1"
    (charge_failed,) = wait_for(lambda: receiver.events("charge.failed"))
    assert charge_failed["data"]["object"]["failure_message"] == message
    assert charge_failed["data"]["object"]["outcome"]["reason"] == decline_code
    retrieved = account.client.v1.payment_intents.retrieve(failed["id"])
    assert retrieved.status == "requires_payment_method"
    assert retrieved.last_payment_error.payment_method.id == payment_method.id


@pytest.mark.parametrize("card", [NEEDS_3DS, NEEDS_3DS_OFF_SESSION])
def test_3ds_card_off_session_needs_authentication(account: Account, card: str) -> None:
    receiver = account.listen(["payment_intent.payment_failed"])
    customer = account.client.v1.customers.create()
    payment_method = account.card(card, customer)
    with pytest.raises(stripe.CardError) as caught:
        account.charge(customer, payment_method, return_url="https://billow.test/return")
    assert caught.value.http_status == 402 and caught.value.code == "authentication_required"
    error = caught.value.json_body["error"]
    assert error["type"] == "card_error"
    payment_intent = account.client.v1.payment_intents.retrieve(error["payment_intent"]["id"])
    assert payment_intent.status == "requires_payment_method"
    assert payment_intent.last_payment_error.code == "authentication_required"
    assert payment_intent.description == "Acme - Invoice ACME-001"
    (event,) = wait_for(lambda: receiver.verified("payment_intent.payment_failed"))
    assert event.data.object.last_payment_error.code == "authentication_required"


@pytest.mark.parametrize("card", [NEEDS_3DS, NEEDS_3DS_OFF_SESSION])
def test_3ds_card_on_session_waits_for_the_customer(account: Account, card: str) -> None:
    receiver = account.listen(["payment_intent.requires_action", "payment_intent.canceled"])
    customer = account.client.v1.customers.create()
    payment_method = account.card(card, customer)
    waiting = account.charge(
        customer, payment_method, off_session=False, error_on_requires_action=False
    )
    assert waiting.status == "requires_action" and waiting.next_action is not None
    wait_for(lambda: receiver.events("payment_intent.requires_action"))
    canceled = account.client.v1.payment_intents.cancel(waiting.id)
    assert canceled.status == "canceled"
    (event,) = wait_for(lambda: receiver.verified("payment_intent.canceled"))
    assert event.data.object.id == waiting.id


def test_amount_below_the_minimum_charge_is_refused(account: Account) -> None:
    customer, card = account.customer_with_card()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.charge(customer, card, amount=49)
    assert (caught.value.code, caught.value.param) == ("amount_too_small", "amount")
    assert caught.value.user_message == "Amount must be at least €0.50 eur"
    assert account.client.v1.payment_intents.list({"customer": customer.id}).data == []


def test_manual_capture_then_capture(account: Account) -> None:
    customer, payment_method = account.customer_with_card()
    held = account.client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": payment_method.id,
            "capture_method": "manual",
            "confirm": True,
            "return_url": "https://billow.test/return",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    assert (held.status, held.amount_capturable, held.amount_received) == (
        "requires_capture",
        5000,
        0,
    )
    assert held.automatic_payment_methods.allow_redirects == "never"
    captured = account.client.v1.payment_intents.capture(held.id, {"amount_to_capture": 4000})
    assert (captured.status, captured.amount_capturable, captured.amount_received) == (
        "succeeded",
        0,
        4000,
    )
    assert account.client.v1.charges.retrieve(captured.latest_charge).amount_captured == 4000


def test_cancel_emits_canceled(account: Account) -> None:
    receiver = account.listen(["payment_intent.canceled"])
    customer, payment_method = account.customer_with_card()
    held = account.client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": payment_method.id,
            "capture_method": "manual",
            "confirm": True,
        }
    )
    canceled = account.client.v1.payment_intents.cancel(
        held.id, {"cancellation_reason": "requested_by_customer"}
    )
    assert canceled.status == "canceled" and canceled.canceled_at
    assert canceled.cancellation_reason == "requested_by_customer"
    (event,) = wait_for(receiver.events)
    assert event["data"]["object"]["status"] == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.payment_intents.cancel(held.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_malformed_card_is_a_card_error(account: Account) -> None:
    with pytest.raises(stripe.CardError) as caught:
        account.client.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": SUCCEEDS, "exp_month": 1, "exp_year": 2035, "cvc": "1"},
            }
        )
    assert (caught.value.code, caught.value.param) == ("invalid_cvc", "card[cvc]")


# 7b. Refunds ---------------------------------------------------------------------------------


def test_refunds_by_payment_intent(account: Account) -> None:
    receiver = account.listen(["refund.created", "charge.refunded"])
    customer, card = account.customer_with_card()
    paid = account.charge(customer, card)
    params = {
        "payment_intent": paid.id,
        "amount": 1000,
        "reason": "requested_by_customer",
        "metadata": {"lago_credit_note_id": "cn_1"},
    }
    refund = account.client.v1.refunds.create(params, {"idempotency_key": "refund-cn_1"})
    assert (refund.object, refund.status, refund.amount, refund.currency) == (
        "refund",
        "succeeded",
        1000,
        "eur",
    )
    assert (refund.payment_intent, refund.charge) == (paid.id, paid.latest_charge)
    assert refund.reason == "requested_by_customer"
    assert refund.metadata.to_dict() == {"lago_credit_note_id": "cn_1"}
    replayed = account.client.v1.refunds.create(params, {"idempotency_key": "refund-cn_1"})
    assert replayed.id == refund.id

    charge = account.client.v1.charges.retrieve(paid.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, False)
    expanded = account.client.v1.payment_intents.retrieve(paid.id, {"expand": ["latest_charge"]})
    assert expanded.latest_charge.amount_refunded == 1000

    rest = account.client.v1.refunds.create({"payment_intent": paid.id})
    assert rest.amount == 1500
    assert account.client.v1.charges.retrieve(paid.latest_charge).refunded is True
    listed = account.client.v1.refunds.list({"payment_intent": paid.id})
    assert [r.id for r in listed.data] == [rest.id, refund.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.refunds.create({"payment_intent": paid.id})
    assert caught.value.code == "charge_already_refunded"

    wait_for(lambda: len(receiver.events("refund.created")) == 2)
    created = receiver.verified("refund.created")
    assert [e.data.object.id for e in created] == [refund.id, rest.id]
    refunded = receiver.events("charge.refunded")
    assert refunded[-1]["data"]["object"]["amount_refunded"] == 2500


def test_refund_errors_are_stripes(account: Account) -> None:
    customer, card = account.customer_with_card()
    paid = account.charge(customer, card)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.refunds.create({"payment_intent": paid.id, "amount": 3000})
    assert caught.value.param == "amount"
    assert caught.value.user_message == (
        "Refund amount (€30.00) is greater than unrefunded amount on charge (€25.00)"
    )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.refunds.create({"payment_intent": "pi_missing"})
    assert (caught.value.code, caught.value.param) == ("resource_missing", "payment_intent")
    declined = account.card(DECLINED_LATER, customer)
    with pytest.raises(stripe.CardError) as failed:
        account.charge(customer, declined)
    failed_id = failed.value.json_body["error"]["payment_intent"]["id"]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.refunds.create({"payment_intent": failed_id})
    assert "does not have a successful charge to refund" in str(caught.value.user_message)


# 8. Customer payment methods ------------------------------------------------------------------


def test_customer_payment_methods_and_default(account: Account) -> None:
    customer, first = account.customer_with_card()
    _, stranger = account.customer_with_card()
    second = account.client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    listed = account.client.v1.customers.payment_methods.list(customer.id, {"type": "card"})
    assert [pm.id for pm in listed.data] == [second.id, first.id]
    limited = account.client.v1.customers.payment_methods.list(customer.id, {"limit": 1})
    assert len(limited.data) == 1 and limited.has_more is True
    assert (
        account.client.v1.customers.payment_methods.retrieve(customer.id, first.id).id == first.id
    )

    fetched = account.client.v1.customers.retrieve(customer.id)
    assert fetched.invoice_settings.default_payment_method is None
    account.client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": second.id}}
    )
    fetched = account.client.v1.customers.retrieve(customer.id)
    assert fetched.invoice_settings.default_payment_method == second.id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.customers.update(
            customer.id, {"invoice_settings": {"default_payment_method": stranger.id}}
        )
    assert caught.value.param == "invoice_settings[default_payment_method]"


def test_a_deleted_customer_still_answers_a_retrieve(account: Account) -> None:
    client = account.client.v1
    customer = client.customers.create({"name": "Gone"})
    deleted = client.customers.delete(customer.id)
    assert (deleted.id, deleted.deleted) == (customer.id, True)
    retrieved = client.customers.retrieve(customer.id)
    assert retrieved.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
    assert customer.id not in [c.id for c in client.customers.list({"limit": 100}).data]
    for call in (
        lambda: client.customers.update(customer.id, {"name": "Back"}),
        lambda: client.customers.delete(customer.id),
    ):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            call()
        assert caught.value.user_message == f"No such customer: '{customer.id}'"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.payment_intents.create({"amount": 900, "currency": "eur", "customer": customer.id})
    assert caught.value.param == "customer"


def test_saved_cards_are_listed_like_stripe(account: Account) -> None:
    customer, first = account.customer_with_card()
    second = account.card(DECLINED_LATER, customer)
    account.card(SUCCEEDS)  # not attached: not the customer's
    listed = account.client.v1.payment_methods.list({"customer": customer.id, "type": "card"})
    assert [pm.id for pm in listed.data] == [second.id, first.id]
    assert [
        pm.id
        for pm in account.client.v1.payment_methods.list({"customer": customer.id, "limit": 1}).data
    ] == [second.id]
    account.client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": first.id}}
    )
    fetched = account.client.v1.customers.retrieve(
        customer.id, {"expand": ["invoice_settings.default_payment_method"]}
    )
    assert fetched.invoice_settings.default_payment_method.card.last4 == "4242"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.payment_methods.list({"customer": "cus_missing"})
    assert (caught.value.code, caught.value.param) == ("resource_missing", "customer")


# 9. Errors for unknown routes and objects ------------------------------------------------------


def test_unknown_routes_and_objects_are_stripe_errors(account: Account) -> None:
    headers = {"Authorization": f"Bearer {account.key}"}
    status, _, body = http("GET", f"{account.url}/v1/teleporters", headers=headers)
    assert status == 404
    assert json.loads(body)["error"]["message"].startswith("Unrecognized request URL")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.raw_request("post", "/v1/teleporters/tp_1/beam")
    assert caught.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as caught:
        account.client.v1.customers.retrieve("cus_missing")
    assert (caught.value.code, caught.value.user_message) == (
        "resource_missing",
        "No such customer: 'cus_missing'",
    )


# 10. Accounts are walls ---------------------------------------------------------------------


@dataclasses.dataclass
class Holdings:
    """One of each object an account can hold, by id."""

    customer: str
    card: str  # attached to the customer
    loose_card: str  # attached to nobody
    open_intent: str  # a PaymentIntent waiting for a payment method
    payment_intent: str  # paid
    held: str  # authorised, waiting for capture
    charge: str
    refund: str
    setup_intent: str
    session: str
    product: str
    plan: str
    coupon: str
    tax_rate: str
    subscription: str
    invoice: str
    invoice_item: str  # pending: on no invoice yet
    endpoint: str
    event: str


def hold(account: Account) -> Holdings:
    client = account.client.v1
    customer, card = account.customer_with_card()
    client.customers.update(customer.id, {"invoice_settings": {"default_payment_method": card.id}})
    paid = account.charge(customer, card)
    held = account.charge(customer, card, capture_method="manual")
    refund = client.refunds.create({"payment_intent": paid.id, "amount": 100})
    product = client.products.create({"name": "Seat"})
    plan = client.plans.create(
        {"amount": 900, "currency": "eur", "interval": "month", "product": product.id}
    )
    subscription = client.subscriptions.create(
        {"customer": customer.id, "items": [{"plan": plan.id}]}
    )
    item = {"customer": customer.id, "amount": 500, "currency": "eur"}
    client.invoice_items.create(item)
    invoice = client.invoices.create({"customer": customer.id})  # takes the pending item
    pending_item = client.invoice_items.create(item)
    return Holdings(
        customer=customer.id,
        card=card.id,
        loose_card=account.card(SUCCEEDS).id,
        open_intent=client.payment_intents.create(
            {"amount": 900, "currency": "eur", "customer": customer.id}
        ).id,
        payment_intent=paid.id,
        held=held.id,
        charge=paid.latest_charge,
        refund=refund.id,
        setup_intent=client.setup_intents.create({"customer": customer.id}).id,
        session=account.checkout(mode="setup", customer=customer.id).id,
        product=product.id,
        plan=plan.id,
        coupon=client.coupons.create(
            {"id": "WELCOME-" + uuid.uuid4().hex, "duration": "once", "percent_off": 10}
        ).id,
        tax_rate=client.tax_rates.create(
            {"display_name": "VAT", "inclusive": False, "percentage": 20}
        ).id,
        subscription=subscription.id,
        invoice=invoice.id,
        invoice_item=pending_item.id,
        endpoint=client.webhook_endpoints.create(
            {"url": "https://billow.test/hook", "enabled_events": ["*"]}
        ).id,
        event=client.events.list({"limit": 1}).data[0].id,
    )


@pytest.fixture(scope="module")
def neighbours(emulator_url: str) -> tuple[Account, Holdings, Account, Holdings]:
    """Alice and Bob, each with one of everything, sharing the emulator."""
    alice, bob = Account(emulator_url), Account(emulator_url)
    return alice, hold(alice), bob, hold(bob)


V1 = Any  # the SDK's ``client.v1`` service

# What Bob tries with Alice's objects: (the call, Stripe's name for the object in
# "No such ...", which of Alice's objects it names, the parameter Stripe blames: ``id``
# when the object is in the URL, a 404, else the request parameter, a 400).
CROSSINGS: dict[str, tuple[Callable[[V1, Holdings, Holdings], Any], str, str, str]] = {
    "retrieve a customer": (
        lambda b, a, mine: b.customers.retrieve(a.customer),
        "customer",
        "customer",
        "id",
    ),
    "update a customer": (
        lambda b, a, mine: b.customers.update(a.customer, {"name": "Mallory"}),
        "customer",
        "customer",
        "id",
    ),
    "delete a customer": (
        lambda b, a, mine: b.customers.delete(a.customer),
        "customer",
        "customer",
        "id",
    ),
    "list a customer's cards": (
        lambda b, a, mine: b.customers.payment_methods.list(a.customer),
        "customer",
        "customer",
        "id",
    ),
    "retrieve a customer's card": (
        lambda b, a, mine: b.customers.payment_methods.retrieve(a.customer, a.card),
        "customer",
        "customer",
        "id",
    ),
    "create a customer with a card": (
        lambda b, a, mine: b.customers.create({"payment_method": a.card}),
        "PaymentMethod",
        "card",
        "payment_method",
    ),
    "create a customer with a default card": (
        lambda b, a, mine: b.customers.create(
            {"invoice_settings": {"default_payment_method": a.card}}
        ),
        "PaymentMethod",
        "card",
        "invoice_settings[default_payment_method]",
    ),
    "make a card one's default": (
        lambda b, a, mine: b.customers.update(
            mine.customer, {"invoice_settings": {"default_payment_method": a.card}}
        ),
        "PaymentMethod",
        "card",
        "invoice_settings[default_payment_method]",
    ),
    "retrieve a card": (
        lambda b, a, mine: b.payment_methods.retrieve(a.card),
        "PaymentMethod",
        "card",
        "id",
    ),
    "update a card": (
        lambda b, a, mine: b.payment_methods.update(a.card, {"metadata": {"k": "v"}}),
        "PaymentMethod",
        "card",
        "id",
    ),
    "attach a card to one's customer": (
        lambda b, a, mine: b.payment_methods.attach(a.loose_card, {"customer": mine.customer}),
        "PaymentMethod",
        "loose_card",
        "id",
    ),
    "attach one's card to a customer": (
        lambda b, a, mine: b.payment_methods.attach(mine.loose_card, {"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "detach a card": (
        lambda b, a, mine: b.payment_methods.detach(a.card),
        "PaymentMethod",
        "card",
        "id",
    ),
    "list a customer's payment methods": (
        lambda b, a, mine: b.payment_methods.list({"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "set up a card for a customer": (
        lambda b, a, mine: b.setup_intents.create({"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "set up a card": (
        lambda b, a, mine: b.setup_intents.create({"payment_method": a.card}),
        "PaymentMethod",
        "card",
        "payment_method",
    ),
    "retrieve a SetupIntent": (
        lambda b, a, mine: b.setup_intents.retrieve(a.setup_intent),
        "setupintent",
        "setup_intent",
        "id",
    ),
    "update a SetupIntent": (
        lambda b, a, mine: b.setup_intents.update(a.setup_intent, {"metadata": {"k": "v"}}),
        "setupintent",
        "setup_intent",
        "id",
    ),
    "confirm a SetupIntent": (
        lambda b, a, mine: b.setup_intents.confirm(
            a.setup_intent, {"payment_method": "pm_card_visa"}
        ),
        "setupintent",
        "setup_intent",
        "id",
    ),
    "cancel a SetupIntent": (
        lambda b, a, mine: b.setup_intents.cancel(a.setup_intent),
        "setupintent",
        "setup_intent",
        "id",
    ),
    "confirm one's SetupIntent with a card": (
        lambda b, a, mine: b.setup_intents.confirm(mine.setup_intent, {"payment_method": a.card}),
        "PaymentMethod",
        "card",
        "payment_method",
    ),
    "move one's SetupIntent to a customer": (
        lambda b, a, mine: b.setup_intents.update(mine.setup_intent, {"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "charge a customer": (
        lambda b, a, mine: b.payment_intents.create(
            {"amount": 900, "currency": "eur", "customer": a.customer}
        ),
        "customer",
        "customer",
        "customer",
    ),
    "charge a card": (
        lambda b, a, mine: b.payment_intents.create(
            {
                "amount": 900,
                "currency": "eur",
                "customer": mine.customer,
                "payment_method": a.card,
                "confirm": True,
            }
        ),
        "PaymentMethod",
        "card",
        "payment_method",
    ),
    "retrieve a PaymentIntent": (
        lambda b, a, mine: b.payment_intents.retrieve(a.payment_intent),
        "payment_intent",
        "payment_intent",
        "id",
    ),
    "update a PaymentIntent": (
        lambda b, a, mine: b.payment_intents.update(a.open_intent, {"description": "x"}),
        "payment_intent",
        "open_intent",
        "id",
    ),
    "confirm a PaymentIntent": (
        lambda b, a, mine: b.payment_intents.confirm(
            a.open_intent, {"payment_method": "pm_card_visa"}
        ),
        "payment_intent",
        "open_intent",
        "id",
    ),
    "capture a PaymentIntent": (
        lambda b, a, mine: b.payment_intents.capture(a.held),
        "payment_intent",
        "held",
        "id",
    ),
    "cancel a PaymentIntent": (
        lambda b, a, mine: b.payment_intents.cancel(a.held),
        "payment_intent",
        "held",
        "id",
    ),
    "confirm one's PaymentIntent with a card": (
        lambda b, a, mine: b.payment_intents.confirm(mine.open_intent, {"payment_method": a.card}),
        "PaymentMethod",
        "card",
        "payment_method",
    ),
    "put a card on one's PaymentIntent": (
        lambda b, a, mine: b.payment_intents.update(mine.open_intent, {"payment_method": a.card}),
        "PaymentMethod",
        "card",
        "payment_method",
    ),
    "move one's PaymentIntent to a customer": (
        lambda b, a, mine: b.payment_intents.update(mine.open_intent, {"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "retrieve a charge": (
        lambda b, a, mine: b.charges.retrieve(a.charge),
        "charge",
        "charge",
        "id",
    ),
    "update a charge": (
        lambda b, a, mine: b.charges.update(a.charge, {"description": "x"}),
        "charge",
        "charge",
        "id",
    ),
    "capture a charge": (
        lambda b, a, mine: b.charges.capture(a.charge),
        "charge",
        "charge",
        "id",
    ),
    "charge a customer directly": (
        lambda b, a, mine: b.charges.create(
            {"amount": 900, "currency": "eur", "customer": a.customer}
        ),
        "customer",
        "customer",
        "customer",
    ),
    "list a customer's charges": (
        lambda b, a, mine: b.charges.list({"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "refund a PaymentIntent": (
        lambda b, a, mine: b.refunds.create({"payment_intent": a.payment_intent}),
        "payment_intent",
        "payment_intent",
        "payment_intent",
    ),
    "refund a charge": (
        lambda b, a, mine: b.refunds.create({"charge": a.charge}),
        "charge",
        "charge",
        "charge",
    ),
    "retrieve a refund": (
        lambda b, a, mine: b.refunds.retrieve(a.refund),
        "refund",
        "refund",
        "id",
    ),
    "update a refund": (
        lambda b, a, mine: b.refunds.update(a.refund, {"metadata": {"k": "v"}}),
        "refund",
        "refund",
        "id",
    ),
    "open a checkout for a customer": (
        lambda b, a, mine: b.checkout.sessions.create({"mode": "setup", "customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "sell a product in a checkout": (
        lambda b, a, mine: b.checkout.sessions.create(
            {
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {"currency": "eur", "unit_amount": 900, "product": a.product},
                        "quantity": 1,
                    }
                ],
            }
        ),
        "product",
        "product",
        "line_items[0][price_data][product]",
    ),
    "retrieve a checkout session": (
        lambda b, a, mine: b.checkout.sessions.retrieve(a.session),
        "checkout.session",
        "session",
        "id",
    ),
    "expire a checkout session": (
        lambda b, a, mine: b.checkout.sessions.expire(a.session),
        "checkout.session",
        "session",
        "id",
    ),
    "retrieve a product": (
        lambda b, a, mine: b.products.retrieve(a.product),
        "product",
        "product",
        "id",
    ),
    "update a product": (
        lambda b, a, mine: b.products.update(a.product, {"name": "x"}),
        "product",
        "product",
        "id",
    ),
    "delete a product": (
        lambda b, a, mine: b.products.delete(a.product),
        "product",
        "product",
        "id",
    ),
    "price a product": (
        lambda b, a, mine: b.plans.create(
            {"amount": 900, "currency": "eur", "interval": "month", "product": a.product}
        ),
        "product",
        "product",
        "product",
    ),
    "retrieve a plan": (
        lambda b, a, mine: b.plans.retrieve(a.plan),
        "plan",
        "plan",
        "id",
    ),
    "update a plan": (
        lambda b, a, mine: b.plans.update(a.plan, {"nickname": "x"}),
        "plan",
        "plan",
        "id",
    ),
    "delete a plan": (
        lambda b, a, mine: b.plans.delete(a.plan),
        "plan",
        "plan",
        "id",
    ),
    "retrieve a coupon": (
        lambda b, a, mine: b.coupons.retrieve(a.coupon),
        "coupon",
        "coupon",
        "id",
    ),
    "delete a coupon": (
        lambda b, a, mine: b.coupons.delete(a.coupon),
        "coupon",
        "coupon",
        "id",
    ),
    "retrieve a tax rate": (
        lambda b, a, mine: b.tax_rates.retrieve(a.tax_rate),
        "tax rate",
        "tax_rate",
        "id",
    ),
    "update a tax rate": (
        lambda b, a, mine: b.tax_rates.update(a.tax_rate, {"display_name": "x"}),
        "tax rate",
        "tax_rate",
        "id",
    ),
    "subscribe a customer": (
        lambda b, a, mine: b.subscriptions.create(
            {"customer": a.customer, "items": [{"plan": mine.plan}]}
        ),
        "customer",
        "customer",
        "customer",
    ),
    "subscribe to a plan": (
        lambda b, a, mine: b.subscriptions.create(
            {"customer": mine.customer, "items": [{"plan": a.plan}]}
        ),
        "plan",
        "plan",
        "items[0][plan]",
    ),
    "retrieve a subscription": (
        lambda b, a, mine: b.subscriptions.retrieve(a.subscription),
        "subscription",
        "subscription",
        "id",
    ),
    "update a subscription": (
        lambda b, a, mine: b.subscriptions.update(a.subscription, {"metadata": {"k": "v"}}),
        "subscription",
        "subscription",
        "id",
    ),
    "cancel a subscription": (
        lambda b, a, mine: b.subscriptions.cancel(a.subscription),
        "subscription",
        "subscription",
        "id",
    ),
    "invoice a customer": (
        lambda b, a, mine: b.invoices.create({"customer": a.customer}),
        "customer",
        "customer",
        "customer",
    ),
    "add an item to a customer's invoice": (
        lambda b, a, mine: b.invoice_items.create(
            {"customer": a.customer, "amount": 500, "currency": "eur"}
        ),
        "customer",
        "customer",
        "customer",
    ),
    "retrieve an invoice": (
        lambda b, a, mine: b.invoices.retrieve(a.invoice),
        "invoice",
        "invoice",
        "id",
    ),
    "pay an invoice": (
        lambda b, a, mine: b.invoices.pay(a.invoice),
        "invoice",
        "invoice",
        "id",
    ),
    "void an invoice": (
        lambda b, a, mine: b.invoices.void_invoice(a.invoice),
        "invoice",
        "invoice",
        "id",
    ),
    "retrieve an invoice item": (
        lambda b, a, mine: b.invoice_items.retrieve(a.invoice_item),
        "invoiceitem",
        "invoice_item",
        "id",
    ),
    "retrieve a webhook endpoint": (
        lambda b, a, mine: b.webhook_endpoints.retrieve(a.endpoint),
        "webhook endpoint",
        "endpoint",
        "id",
    ),
    "retrieve an event": (
        lambda b, a, mine: b.events.retrieve(a.event),
        "event",
        "event",
        "id",
    ),
}


@pytest.mark.parametrize("crossing", CROSSINGS)
def test_an_account_cannot_reach_anothers_objects(
    neighbours: tuple[Account, Holdings, Account, Holdings], crossing: str
) -> None:
    """Stripe answers as if the object did not exist: "No such customer: 'cus_…'", a 404
    when the URL names it, a 400 naming the parameter that did."""
    alice, alices, bob, bobs = neighbours
    call, noun, held, param = CROSSINGS[crossing]
    object_id = getattr(alices, held)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call(bob.client.v1, alices, bobs)
    error = caught.value
    assert (error.http_status, error.code, error.param) == (
        404 if param == "id" else 400,
        "resource_missing",
        param,
    )
    assert error.user_message == f"No such {noun}: '{object_id}'"
    assert alice.client.v1.customers.retrieve(alices.customer).name is None
    assert alice.client.v1.payment_methods.retrieve(alices.card).customer == alices.customer


# Each of Alice's objects, by the list it belongs to.
LISTS: dict[str, Callable[[V1], Any]] = {
    "customer": lambda v1: v1.customers.list({"limit": 100}),
    "card": lambda v1: v1.payment_methods.list({"limit": 100}),
    "open_intent": lambda v1: v1.payment_intents.list({"limit": 100}),
    "charge": lambda v1: v1.charges.list({"limit": 100}),
    "refund": lambda v1: v1.refunds.list({"limit": 100}),
    "setup_intent": lambda v1: v1.setup_intents.list({"limit": 100}),
    "session": lambda v1: v1.checkout.sessions.list({"limit": 100}),
    "product": lambda v1: v1.products.list({"limit": 100}),
    "plan": lambda v1: v1.plans.list({"limit": 100}),
    "coupon": lambda v1: v1.coupons.list({"limit": 100}),
    "tax_rate": lambda v1: v1.tax_rates.list({"limit": 100}),
    "subscription": lambda v1: v1.subscriptions.list({"limit": 100}),
    "invoice": lambda v1: v1.invoices.list({"limit": 100}),
    "invoice_item": lambda v1: v1.invoice_items.list({"limit": 100}),
    "endpoint": lambda v1: v1.webhook_endpoints.list({"limit": 100}),
    "event": lambda v1: v1.events.list({"limit": 100}),
}


@pytest.mark.parametrize("held", LISTS)
def test_lists_hold_only_the_accounts_own_objects(
    neighbours: tuple[Account, Holdings, Account, Holdings], held: str
) -> None:
    alice, alices, bob, bobs = neighbours
    listing = LISTS[held]
    alice_ids = {obj.id for obj in listing(alice.client.v1).data}
    bob_ids = {obj.id for obj in listing(bob.client.v1).data}
    assert getattr(alices, held) in alice_ids and getattr(bobs, held) in bob_ids
    assert alice_ids.isdisjoint(bob_ids)


def test_ids_an_account_chooses_are_its_own(make_account: Callable[[], Account]) -> None:
    alice, bob = make_account(), make_account()
    coupon = "SUMMER-" + uuid.uuid4().hex
    alice.client.v1.coupons.create({"id": coupon, "duration": "once", "percent_off": 10})
    bob.client.v1.coupons.create({"id": coupon, "duration": "once", "percent_off": 25})
    assert alice.client.v1.coupons.retrieve(coupon).percent_off == 10
    assert bob.client.v1.coupons.retrieve(coupon).percent_off == 25
    bob.client.v1.coupons.delete(coupon)
    assert alice.client.v1.coupons.retrieve(coupon).percent_off == 10


def test_stripes_test_payment_methods_serve_every_account(
    make_account: Callable[[], Account],
) -> None:
    for account in (make_account(), make_account()):
        customer = account.client.v1.customers.create()
        paid = account.client.v1.payment_intents.create(
            {
                "amount": 900,
                "currency": "eur",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
        assert paid.status == "succeeded"
        charge = account.client.v1.charges.retrieve(paid.latest_charge)
        assert charge.payment_method_details.card.last4 == "4242"


def test_the_hosted_page_acts_as_the_sessions_account(
    make_account: Callable[[], Account],
) -> None:
    alice, bob = make_account(), make_account()
    receiver, bobs_receiver = alice.listen(["setup_intent.succeeded"]), bob.listen()
    customer = alice.client.v1.customers.create()
    session = alice.checkout(mode="setup", customer=customer.id)
    status, _, _ = http("POST", session.url, {"card": SUCCEEDS})
    assert status == 200
    (event,) = wait_for(lambda: receiver.verified("setup_intent.succeeded"))
    setup_intent = alice.client.v1.setup_intents.retrieve(event.data.object.id)
    card = alice.client.v1.customers.payment_methods.list(customer.id).data[0]
    assert setup_intent.payment_method == card.id
    with pytest.raises(stripe.InvalidRequestError):
        bob.client.v1.setup_intents.retrieve(setup_intent.id)
    with pytest.raises(stripe.InvalidRequestError):
        bob.client.v1.payment_methods.retrieve(card.id)
    assert bobs_receiver.requests == []
    status, _, page = http("GET", f"{alice.url}/checkout/cs_test_missing")
    assert status == 404 and "No such checkout session" in page


# Lifecycle -----------------------------------------------------------------------------------


def test_start_stop_start() -> None:
    with pytest.raises(ValueError):
        StripeEmulator(host="0.0.0.0")
    emulator = StripeEmulator()
    with pytest.raises(RuntimeError):
        _ = emulator.url
    for _ in range(2):
        url = emulator.start()
        assert url == emulator.url and url.startswith("http://127.0.0.1:")
        assert sdk(url, new_key()).v1.customers.list().object == "list"
        emulator.stop()
    with pytest.raises(RuntimeError):
        _ = emulator.url


def test_a_revoked_key_is_refused_from_then_on(account: Account) -> None:
    account.client.v1.customers.list()
    status, _, _ = http(
        "POST",
        f"{account.url}/_config/revoked_keys",
        {"api_key": account.key},
    )
    assert status == 200
    with pytest.raises(stripe.AuthenticationError) as refused:
        account.client.v1.customers.list()
    assert refused.value.error is not None
    assert refused.value.error.code == "api_key_expired"


def roll_key(account: Account) -> str:
    """Roll the account's key as its owner would in the dashboard; use the new one."""
    old_key = account.key
    account.key = account.config("POST", "/_config/roll_key", {"api_key": old_key})["api_key"]
    account.client = sdk(account.url, account.key)
    return old_key


def test_a_rolled_key_opens_the_same_account(make_account: Callable[[], Account]) -> None:
    alice, bob = make_account(), make_account()
    receiver = alice.listen(["customer.created"])
    customer = alice.client.v1.customers.create()
    bob.client.v1.customers.create()
    endpoint = alice.client.v1.webhook_endpoints.list().data[0]
    old_key = roll_key(alice)
    assert alice.key != old_key and alice.key.startswith("sk_test_")

    with pytest.raises(stripe.AuthenticationError) as refused:
        sdk(alice.url, old_key).v1.customers.list()
    assert refused.value.error is not None and refused.value.error.code == "api_key_expired"
    assert refused.value.http_status == 401
    client = alice.client.v1
    assert client.customers.retrieve(customer.id).id == customer.id
    assert client.events.list().data[0].data.object.id == customer.id
    assert [e.id for e in client.webhook_endpoints.list().data] == [endpoint.id]
    another = client.customers.create()
    wait_for(lambda: len(receiver.events()) == 2)
    assert receiver.events()[1]["data"]["object"]["id"] == another.id

    by_old_key = alice.config("GET", "/_config/requests?api_key=" + old_key)
    by_new_key = alice.config("GET", "/_config/requests?api_key=" + alice.key)
    assert by_old_key["account"] == by_new_key["account"]
    assert by_new_key["by_endpoint"]["POST /v1/customers"] == 2
    assert by_new_key["by_endpoint"]["GET /v1/customers"] == 1  # the refused call
    alice.config(
        "POST",
        "/_config/faults",
        {"api_key": old_key, "path_prefix": "/v1/customers", "status": "503", "count": "1"},
    )
    with pytest.raises(stripe.APIError) as failed:
        client.customers.list()
    assert failed.value.http_status == 503
    alice.config("DELETE", "/_config/requests?api_key=" + old_key)
    assert alice.request_counts() == {}
    assert bob.request_counts() == {"POST /v1/customers": 1}


def test_a_revoked_key_is_mended_by_rolling_it(account: Account) -> None:
    customer = account.client.v1.customers.create()
    account.config("POST", "/_config/revoked_keys", {"api_key": account.key})
    with pytest.raises(stripe.AuthenticationError):
        account.client.v1.customers.list()
    roll_key(account)
    assert account.client.v1.customers.retrieve(customer.id).id == customer.id


def test_a_rolled_restricted_key_stays_restricted(emulator_url: str) -> None:
    restricted = Account(emulator_url)
    restricted.key = new_key("rk_test_")
    assert roll_key(restricted).startswith("rk_test_") and restricted.key.startswith("rk_test_")


def test_injected_faults_fail_the_accounts_next_requests(account: Account) -> None:
    status, _, _ = http(
        "POST",
        f"{account.url}/_config/faults",
        {"api_key": account.key, "path_prefix": "/v1/customers", "status": "503", "count": "1"},
    )
    assert status == 200
    client = stripe.StripeClient(
        account.key, base_addresses={"api": account.url}, max_network_retries=0
    )
    with pytest.raises(stripe.APIError) as failed:
        client.v1.customers.list()
    assert failed.value.http_status == 503
    assert client.v1.customers.list() is not None


def _retrying_client(account: Account, monkeypatch: pytest.MonkeyPatch) -> stripe.StripeClient:
    """The SDK with its own retries on, and its backoff shortened so tests stay fast."""
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.01)
    return stripe.StripeClient(
        account.key, base_addresses={"api": account.url}, max_network_retries=2
    )


def test_sdk_retries_lock_timeouts_with_the_same_idempotency_key(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = account.listen(["payment_intent.succeeded"])
    customer, card = account.customer_with_card()
    account.config(
        "POST",
        "/_config/faults",
        {
            "api_key": account.key,
            "path_prefix": "/v1/payment_intents",
            "code": "lock_timeout",
            "count": "2",
        },
    )
    client = _retrying_client(account, monkeypatch)
    account.client = client
    paid = account.charge(customer, card, key="payment-42")
    assert paid.status == "succeeded"
    assert account.request_counts()["POST /v1/payment_intents"] == 3
    (event,) = wait_for(lambda: receiver.verified("payment_intent.succeeded"))
    assert event.request.idempotency_key == "payment-42"
    assert len(client.v1.payment_intents.list({"customer": customer.id}).data) == 1


def test_a_lost_answer_is_replayed_to_the_sdks_retry(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``when=after``: Stripe did the work but the answer never arrived. The SDK retries
    with the key it generated for the call, and gets the original answer back."""
    customer, card = account.customer_with_card()
    account.config(
        "POST",
        "/_config/faults",
        {
            "api_key": account.key,
            "path_prefix": "/v1/payment_intents",
            "status": "500",
            "count": "1",
            "when": "after",
        },
    )
    account.client = _retrying_client(account, monkeypatch)
    paid = account.charge(customer, card)
    assert paid.last_response.headers["Idempotent-Replayed"] == "true"
    listed = account.client.v1.payment_intents.list({"customer": customer.id}).data
    assert [pi.id for pi in listed] == [paid.id]


def test_rate_limits_reach_the_caller_unless_stripe_says_retry(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _retrying_client(account, monkeypatch)
    fault = {"api_key": account.key, "path_prefix": "/v1/customers", "code": "rate_limit"}
    account.config("POST", "/_config/faults", {**fault, "count": "1"})
    with pytest.raises(stripe.RateLimitError) as caught:
        client.v1.customers.list()
    assert caught.value.http_status == 429 and caught.value.error is not None
    assert (caught.value.error.code, caught.value.error.type) == (
        "rate_limit",
        "invalid_request_error",
    )
    assert "stripe-should-retry" not in (caught.value.headers or {})
    assert account.request_counts() == {"GET /v1/customers": 1}

    account.config("POST", "/_config/faults", {**fault, "count": "1", "should_retry": "true"})
    assert client.v1.customers.list().object == "list"
    assert account.request_counts() == {"GET /v1/customers": 3}


@pytest.mark.parametrize(
    "form",
    [
        {"path_prefix": "/v1/customers", "status": "404", "count": "1"},
        {"path_prefix": "/v1/customers", "count": "1"},
        {"path_prefix": "/customers", "status": "500", "count": "1"},
        {"path_prefix": "/v1/customers", "status": "500", "count": "x"},
        {"path_prefix": "/v1/customers", "status": "500", "count": "1", "when": "never"},
        {
            "path_prefix": "/v1/customers",
            "code": "rate_limit",
            "count": "1",
            "should_retry": "maybe",
        },
    ],
)
def test_fault_parameters_are_checked(account: Account, form: dict[str, str]) -> None:
    status, _, _ = http("POST", f"{account.url}/_config/faults", {"api_key": account.key, **form})
    assert status == 400


def test_requests_are_counted_per_account_and_route(make_account: Callable[[], Account]) -> None:
    alice, bob = make_account(), make_account()
    customer, card = alice.customer_with_card()
    alice.charge(customer, card)
    alice.client.v1.customers.retrieve(customer.id)
    bob.client.v1.customers.list()
    assert alice.request_counts() == {
        "GET /v1/customers/{id}": 1,
        "POST /v1/customers": 1,
        "POST /v1/payment_intents": 1,
        "POST /v1/payment_methods": 1,
        "POST /v1/payment_methods/{id}/attach": 1,
    }
    answer = alice.config("GET", "/_config/requests?api_key=" + alice.key)
    assert answer["total"] == 5 and answer["account"].startswith("acct_")
    bobs = alice.config("GET", "/_config/requests?api_key=" + bob.key)["account"]
    everyone = alice.config("GET", "/_config/requests")["accounts"]
    assert everyone[bobs] == {
        "api_keys": [bob.key],
        "total": 1,
        "by_endpoint": {"GET /v1/customers": 1},
    }
    alice.config("DELETE", "/_config/requests?api_key=" + alice.key)
    assert alice.request_counts() == {} and bob.request_counts() == {"GET /v1/customers": 1}
