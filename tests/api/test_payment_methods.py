"""A customer's default payment method never moves backwards: the customer's explicit
choice reaches Stripe, and Stripe's events, however late or out of order they arrive, never
undo a newer change (Billow's own echoes, older saves, older dashboard changes, cards
deleted or detached since). Driven through the API, signed Stripe events built as Stripe
sends them, the hosted checkout page, and Stripe (the emulator) read with its SDK."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from billow.services.stripe_event_intake import HANDLED_TYPES
from tests.api.billing_helpers import DECLINED, VISA, payment_methods, stripe_customer
from tests.api.conftest import StripeOrg, attach_card
from tests.api.test_payments import browse, inject_fault
from tests.api.test_stripe_webhooks import (
    deliver,
    event,
    signed,
    stored_event,
    webhook_secret,
)

# -- steps ---------------------------------------------------------------------------------


def send(
    local_billow: Any,
    org: StripeOrg,
    kind: str,
    obj: dict[str, Any],
    created: int,
    idempotency_key: str | None = None,
) -> str:
    """A signed delivery of a new event built as Stripe would; returns its id."""
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    body = event(event_id, kind, obj, created=created, idempotency_key=idempotency_key)
    status, reply = deliver(
        local_billow, org.id, body, signed(body, webhook_secret(local_billow, org.id))
    )
    assert status == 200 and reply["outcome"] == "stored", reply
    return event_id


def resend_late(local_billow: Any, org: StripeOrg, original: dict[str, Any]) -> str:
    """One of Stripe's events delivered again, late: its body as Stripe sent it (``created``,
    ``request``), under a new id, as a delivery Billow has not seen."""
    event_id = f"evt_{uuid.uuid4().hex[:20]}"
    body = json.dumps({**original, "id": event_id}).encode()
    status, reply = deliver(
        local_billow, org.id, body, signed(body, webhook_secret(local_billow, org.id))
    )
    assert status == 200 and reply["outcome"] == "stored", reply
    return event_id


def setup_intent(customer: str, method: str) -> dict[str, Any]:
    return {
        "id": f"seti_{uuid.uuid4().hex[:14]}",
        "object": "setup_intent",
        "status": "succeeded",
        "customer": customer,
        "payment_method": method,
    }


def customer_object(customer: str, default: str) -> dict[str, Any]:
    return {
        "id": customer,
        "object": "customer",
        "invoice_settings": {"default_payment_method": default},
    }


def outcome(local_billow: Any, org: StripeOrg, event_id: str, wait_for: Any) -> str:
    """What Billow made of a delivered event, once it has processed it."""
    return str(
        wait_for(
            lambda: (
                (status := stored_event(local_billow, org.id, event_id)["status"]) != "received"
                and status
            )
        )
    )


def stripe_events(org: StripeOrg, kind: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 100, **({"type": kind} if kind else {})}
    return [item.to_dict() for item in org.stripe.v1.events.list(params=params).data]


def quiet(local_billow: Any, org: StripeOrg, wait_for: Any) -> None:
    """Every event Stripe sent so far is processed, and so is what that caused in turn
    (``wait_idle`` cannot see Stripe's deliveries still on their way); none of that work
    failed for good."""

    def processed(event_id: str) -> bool:
        try:
            return stored_event(local_billow, org.id, event_id)["status"] != "received"
        except KeyError:
            return False  # not delivered yet

    seen: set[str] = set()
    while True:
        ids = {item["id"] for item in stripe_events(org) if item["type"] in HANDLED_TYPES}
        if ids == seen:
            for queue in ("stripe-events", "provider-sync"):
                assert not [m for m in local_billow.dlq_messages(queue) if org.id in m], queue
            return
        wait_for(lambda ids=ids: all(processed(event_id) for event_id in ids))
        local_billow.wait_idle()
        seen = ids


def listing(org: StripeOrg, external_id: str) -> list[tuple[str, bool]]:
    """(Stripe id, is_default) of each listed method, sorted by Stripe id."""
    return sorted(
        (m["provider_method_id"], m["is_default"]) for m in payment_methods(org, external_id)
    )


def lago_ids(org: StripeOrg, external_id: str) -> dict[str, str]:
    return {m["provider_method_id"]: m["lago_id"] for m in payment_methods(org, external_id)}


def stripe_default(org: StripeOrg, customer: str) -> str | None:
    settings = org.stripe.v1.customers.retrieve(customer).invoice_settings
    return settings.default_payment_method if settings else None  # type: ignore[return-value]


def set_as_default(org: StripeOrg, external_id: str, method_lago_id: str) -> tuple[int, Any]:
    return org.api.put(f"/customers/{external_id}/payment_methods/{method_lago_id}/set_as_default")


def two_cards(
    local_billow: Any, org: StripeOrg, external_id: str, wait_for: Any
) -> tuple[str, str, str]:
    """A Stripe customer linked to Billow: card ``first`` comes with the link, then card
    ``second`` is saved through a setup intent and, being newer, becomes the default.
    Returns (Stripe customer, first, second)."""
    customer = stripe_customer(org, external_id, wait_for=wait_for)
    first = stripe_default(org, customer)
    assert first
    second = attach_card(org.stripe, customer)
    send(local_billow, org, "setup_intent.succeeded", setup_intent(customer, second), now())
    wait_for(lambda: len(payment_methods(org, external_id)) == 2)
    quiet(local_billow, org, wait_for)
    assert listing(org, external_id) == sorted([(first, False), (second, True)])
    assert stripe_default(org, customer) == second
    return customer, first, second


def now() -> int:
    return int(time.time())


def deliveries_off(org: StripeOrg) -> None:
    """Stripe stops telling Billow anything (its webhook endpoint is gone from Stripe)."""
    for endpoint in org.stripe.v1.webhook_endpoints.list().data:
        org.stripe.v1.webhook_endpoints.delete(endpoint.id)


# -- the customer's choice -----------------------------------------------------------------


def test_a_card_saved_just_before_the_choice_is_listed_but_never_undoes_it(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """The race of the issue: a checkout saved a card, the customer at once chose another
    one as default, and then Stripe's events about the save arrive, behind the echo of the
    earlier change (the previous card's adoption)."""
    customer, chosen, adopted = two_cards(local_billow, stripe_org, "race", wait_for)
    earlier_echo = next(
        item
        for item in stripe_events(stripe_org, "customer.updated")
        if item["data"]["object"]["invoice_settings"]["default_payment_method"] == adopted
    )
    saved = attach_card(stripe_org.stripe, customer)  # the checkout saved it...
    saved_at = now()  # ...at this second, and its events are on their way

    status, body = set_as_default(stripe_org, "race", lago_ids(stripe_org, "race")[chosen])
    assert status == 200, body
    assert body["payment_method"]["is_default"] is True
    assert stripe_default(stripe_org, customer) == chosen

    late = [
        send(
            local_billow,
            stripe_org,
            "setup_intent.succeeded",
            setup_intent(customer, saved),
            saved_at,
        ),
        resend_late(local_billow, stripe_org, earlier_echo),
    ]
    assert [outcome(local_billow, stripe_org, e, wait_for) for e in late] == [
        "processed",
        "ignored",
    ]
    quiet(local_billow, stripe_org, wait_for)
    assert listing(stripe_org, "race") == sorted([(chosen, True), (adopted, False), (saved, False)])
    assert stripe_default(stripe_org, customer) == chosen


def test_the_choice_through_the_checkout_page_holds_in_billow_and_stripe(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """The same race, played for real: a card saved on the hosted checkout page, another
    chosen as default right away, while Stripe's events about the save are processed."""
    billing = {"payment_provider": "stripe", "sync": True, "sync_with_provider": True}
    body = stripe_org.api.post(
        "/customers",
        json={"customer": {"external_id": "shopper", "billing_configuration": billing}},
    )[1]
    customer = body["customer"]["billing_configuration"]["provider_customer_id"]

    def save(card: str, count: int) -> None:
        status, body = stripe_org.api.post("/customers/shopper/checkout_url")
        assert status == 200, body
        assert browse(body["customer"]["checkout_url"], {"card": card})[0] == 303
        wait_for(lambda: len(payment_methods(stripe_org, "shopper")) == count)

    save(VISA, 1)
    [first] = payment_methods(stripe_org, "shopper")
    status, body = stripe_org.api.post("/customers/shopper/checkout_url")
    assert browse(body["customer"]["checkout_url"], {"card": DECLINED})[0] == 303
    status, body = set_as_default(stripe_org, "shopper", first["lago_id"])
    assert status == 200, body

    wait_for(lambda: len(payment_methods(stripe_org, "shopper")) == 2)
    local_billow.wait_idle()
    quiet(local_billow, stripe_org, wait_for)
    defaults = [m for m in payment_methods(stripe_org, "shopper") if m["is_default"]]
    assert [m["lago_id"] for m in defaults] == [first["lago_id"]]
    assert stripe_default(stripe_org, customer) == first["provider_method_id"]


def test_a_superseded_write_of_billows_landing_last_is_undone_and_the_dashboard_still_wins(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Two of Billow's writes to Stripe's default crossed: the older one (a card's adoption
    racing the customer's choice) landed last. Stripe reports it with Billow's key; Billow
    puts the customer's choice back. A change made in Stripe's dashboard afterwards is
    someone else's, newer: it applies."""
    customer, chosen, other = two_cards(local_billow, stripe_org, "crossed", wait_for)
    status, _ = set_as_default(stripe_org, "crossed", lago_ids(stripe_org, "crossed")[chosen])
    assert status == 200
    customer_id = stripe_org.api.get("/customers/crossed")[1]["customer"]["lago_id"]

    stripe_org.stripe.v1.customers.update(
        customer,
        params={"invoice_settings": {"default_payment_method": other}},
        options={"idempotency_key": f"billow-default-{customer_id}-2-adoption"},
    )
    quiet(local_billow, stripe_org, wait_for)
    assert stripe_default(stripe_org, customer) == chosen
    assert listing(stripe_org, "crossed") == sorted([(chosen, True), (other, False)])

    stripe_org.stripe.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": other}}
    )
    quiet(local_billow, stripe_org, wait_for)
    assert stripe_default(stripe_org, customer) == other
    assert listing(stripe_org, "crossed") == sorted([(chosen, False), (other, True)])


def test_the_choice_reaches_stripe_once_per_change(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Billow's write to Stripe carries an idempotency key unique to the change: a request
    retried after its answer was lost reuses it (Stripe replays, nothing runs twice), a
    repeated request changes nothing, and the next change gets a new key."""
    customer, chosen, other = two_cards(local_billow, stripe_org, "keys", wait_for)
    ids = lago_ids(stripe_org, "keys")
    deliveries_off(stripe_org)  # only Stripe's record of Billow's requests matters here

    def billow_writes() -> list[tuple[str, str]]:
        return [
            (item["data"]["object"]["invoice_settings"]["default_payment_method"], key)
            for item in reversed(stripe_events(stripe_org, "customer.updated"))
            if (key := item["request"]["idempotency_key"] or "").startswith("billow-default-")
        ]

    before = billow_writes()
    inject_fault(
        local_billow,
        stripe_org,
        f"/v1/customers/{customer}",
        1,
        status="503",
        should_retry="false",
        when="after",
    )
    status, body = set_as_default(stripe_org, "keys", ids[chosen])
    assert status == 503, body  # Stripe made the change, but its answer was lost
    assert listing(stripe_org, "keys") == sorted([(chosen, False), (other, True)])
    assert stripe_default(stripe_org, customer) == chosen

    assert set_as_default(stripe_org, "keys", ids[chosen])[0] == 200  # the caller retries
    assert set_as_default(stripe_org, "keys", ids[chosen])[0] == 200  # and again
    assert listing(stripe_org, "keys") == sorted([(chosen, True), (other, False)])
    [(method, first_key)] = billow_writes()[len(before) :]
    assert method == chosen

    assert set_as_default(stripe_org, "keys", ids[other])[0] == 200
    [(method, second_key)] = billow_writes()[len(before) + 1 :]
    assert method == other and second_key != first_key
    assert stripe_default(stripe_org, customer) == other


def test_a_choice_or_deletion_stripe_refuses_or_cannot_take_changes_nothing(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    customer, first, second = two_cards(local_billow, stripe_org, "refused", wait_for)
    ids = lago_ids(stripe_org, "refused")
    deliveries_off(stripe_org)  # Billow has not heard of the detach below yet
    stripe_org.stripe.v1.payment_methods.detach(first)

    status, body = set_as_default(stripe_org, "refused", ids[first])
    assert status == 422, body
    assert body["code"] == "third_party_error"
    assert body["error_details"]["third_party"] == "stripe"
    assert body["error_details"]["payment_method"] == ["resource_missing"]
    assert listing(stripe_org, "refused") == sorted([(first, False), (second, True)])
    assert stripe_default(stripe_org, customer) == second

    inject_fault(
        local_billow,
        stripe_org,
        "/v1/customers/",
        1,
        status="503",
        should_retry="false",
        when="before",
    )
    status, body = set_as_default(stripe_org, "refused", ids[second])
    assert status == 503 and body["code"] == "provider_unavailable", body
    inject_fault(
        local_billow,
        stripe_org,
        "/v1/payment_methods/",
        1,
        status="503",
        should_retry="false",
        when="before",
    )
    status, body = stripe_org.api.delete(f"/customers/refused/payment_methods/{ids[second]}")
    assert status == 503 and body["code"] == "provider_unavailable", body
    assert listing(stripe_org, "refused") == sorted([(first, False), (second, True)])
    assert stripe_org.stripe.v1.payment_methods.retrieve(second).customer == customer

    # Deleting the card Stripe already detached only forgets Billow's copy.
    status, body = stripe_org.api.delete(f"/customers/refused/payment_methods/{ids[first]}")
    assert status == 200, body
    assert listing(stripe_org, "refused") == [(second, True)]
    status, body = set_as_default(stripe_org, "refused", ids[second])
    assert status == 200, body
    assert stripe_default(stripe_org, customer) == second


# -- Stripe's events, out of order ---------------------------------------------------------


def test_dashboard_changes_delivered_out_of_order_end_on_the_latest(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    customer, first, second = two_cards(local_billow, stripe_org, "dashboard", wait_for)
    for card in (first, second):  # someone switches back and forth in Stripe's dashboard
        stripe_org.stripe.v1.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": card}}
        )
    quiet(local_billow, stripe_org, wait_for)
    older = next(
        item
        for item in stripe_events(stripe_org, "customer.updated")
        if item["data"]["object"]["invoice_settings"]["default_payment_method"] == first
    )
    late = resend_late(local_billow, stripe_org, older)
    assert outcome(local_billow, stripe_org, late, wait_for) == "ignored"
    assert listing(stripe_org, "dashboard") == sorted([(first, False), (second, True)])
    assert stripe_default(stripe_org, customer) == second


def test_cards_saved_out_of_order_leave_the_newest_as_default(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    customer = stripe_customer(stripe_org, "saves", wait_for=wait_for)
    linked = stripe_default(stripe_org, customer)
    older, newer = (
        attach_card(stripe_org.stripe, customer),
        attach_card(stripe_org.stripe, customer),
    )
    saved_at = now()
    first = send(
        local_billow, stripe_org, "setup_intent.succeeded", setup_intent(customer, newer), saved_at
    )
    assert outcome(local_billow, stripe_org, first, wait_for) == "processed"
    late = send(
        local_billow,
        stripe_org,
        "setup_intent.succeeded",
        setup_intent(customer, older),
        saved_at - 5,
    )
    assert outcome(local_billow, stripe_org, late, wait_for) == "processed"
    quiet(local_billow, stripe_org, wait_for)
    assert listing(stripe_org, "saves") == sorted(
        [(linked, False), (older, False), (newer, True)]  # type: ignore[list-item]
    )
    assert stripe_default(stripe_org, customer) == newer


def test_a_deleted_card_is_detached_in_stripe_and_late_events_never_bring_it_back(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    customer, kept, deleted = two_cards(local_billow, stripe_org, "deleted", wait_for)
    saved_at = now() - 5  # the events below describe the card's save, before the deletion
    status, body = stripe_org.api.delete(
        f"/customers/deleted/payment_methods/{lago_ids(stripe_org, 'deleted')[deleted]}"
    )
    assert status == 200, body
    assert body["payment_method"]["provider_method_id"] == deleted
    assert body["payment_method"]["is_default"] is False
    assert stripe_org.stripe.v1.payment_methods.retrieve(deleted).customer is None
    assert stripe_default(stripe_org, customer) is None  # Stripe dropped it as default too
    assert listing(stripe_org, "deleted") == [(kept, False)]

    late = [
        send(
            local_billow,
            stripe_org,
            "setup_intent.succeeded",
            setup_intent(customer, deleted),
            saved_at,
        ),
        send(
            local_billow,
            stripe_org,
            "customer.updated",
            customer_object(customer, deleted),
            saved_at,
            f"billow-default-{uuid.uuid4()}",
        ),
    ]
    assert [outcome(local_billow, stripe_org, e, wait_for) for e in late] == ["ignored"] * 2
    quiet(local_billow, stripe_org, wait_for)
    assert listing(stripe_org, "deleted") == [(kept, False)]


def test_a_card_detached_in_stripe_before_its_save_arrives_stays_out(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Stripe's ``payment_method.detached`` overtook the events that saved the card (and
    made it the default in the dashboard): those older events must not undo it."""
    customer = stripe_customer(stripe_org, "detached", wait_for=wait_for)
    linked = stripe_default(stripe_org, customer)
    gone = attach_card(stripe_org.stripe, customer)
    saved_at = now()
    stripe_org.stripe.v1.payment_methods.detach(gone)
    quiet(local_billow, stripe_org, wait_for)  # the detach: a card Billow never heard of

    late = [
        send(
            local_billow,
            stripe_org,
            "setup_intent.succeeded",
            setup_intent(customer, gone),
            saved_at,
        ),
        send(
            local_billow, stripe_org, "customer.updated", customer_object(customer, gone), saved_at
        ),
    ]
    assert [outcome(local_billow, stripe_org, e, wait_for) for e in late] == ["ignored"] * 2
    quiet(local_billow, stripe_org, wait_for)
    assert listing(stripe_org, "detached") == [(linked, True)]
    assert stripe_default(stripe_org, customer) == linked


def test_a_dashboard_change_older_than_the_link_leaves_the_linked_default(
    local_billow: Any, stripe_org: StripeOrg, wait_for: Any
) -> None:
    """Linking reads Stripe's default as it is now; a ``customer.updated`` from before the
    link, delivered after it, describes an older state and changes nothing."""
    client = stripe_org.stripe
    existing = client.v1.customers.create(params={"name": "Linked later"})
    older = attach_card(client, existing.id, default=True)
    current = attach_card(client, existing.id, default=True)
    quiet(local_billow, stripe_org, wait_for)  # not Billow's customer yet: nothing to do
    earlier = next(
        item
        for item in stripe_events(stripe_org, "customer.updated")
        if item["data"]["object"]["invoice_settings"]["default_payment_method"] == older
    )
    billing = {"payment_provider": "stripe", "provider_customer_id": existing.id, "sync": True}
    status, body = stripe_org.api.post(
        "/customers", json={"customer": {"external_id": "linked", "billing_configuration": billing}}
    )
    assert status == 200, body
    assert listing(stripe_org, "linked") == [(current, True)]

    late = resend_late(local_billow, stripe_org, earlier)
    assert outcome(local_billow, stripe_org, late, wait_for) == "ignored"
    quiet(local_billow, stripe_org, wait_for)
    assert listing(stripe_org, "linked") == [(current, True)]
    assert stripe_default(stripe_org, existing.id) == current
