"""Shared steps for the billing tests: a plan, a Stripe-linked customer with a card, and
the ways Billow's events are observed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.api.conftest import StripeOrg, attach_card

VISA = "4242424242424242"
DECLINED = "4000000000000341"
"""Attaches, then every charge is declined (``card_declined``)."""
THREE_D_SECURE = "4000002760003184"
"""Every payment needs 3-D Secure authentication."""


def create_plan(org: Any, code: str, amount_cents: int = 1000, **fields: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/plans",
        json={
            "plan": {
                "name": code.title(),
                "code": code,
                "interval": fields.pop("interval", "monthly"),
                "amount_cents": amount_cents,
                "amount_currency": fields.pop("amount_currency", "EUR"),
                "pay_in_advance": fields.pop("pay_in_advance", False),
                **fields,
            }
        },
    )
    assert status == 200, body
    return body["plan"]  # type: ignore[no-any-return]


def stripe_customer(
    stripe_org: StripeOrg,
    external_id: str,
    card: str | None = VISA,
    wait_for: Any = None,
    test_clock: str | None = None,
    address: dict[str, str] | None = None,
) -> str:
    """A customer that already exists in Stripe (with ``card`` as default, on
    ``test_clock`` and at ``address`` if given), linked to Billow."""
    client = stripe_org.stripe
    existing = client.v1.customers.create(
        params={
            "name": external_id,
            **({"test_clock": test_clock} if test_clock else {}),
            **({"address": address} if address else {}),
        }
    )
    if card:
        attach_card(client, existing.id, number=card, default=True)
    status, body = stripe_org.api.post(
        "/customers",
        json={
            "customer": {
                "external_id": external_id,
                "currency": "EUR",
                "billing_configuration": {
                    "payment_provider": "stripe",
                    "provider_customer_id": existing.id,
                    "sync_with_provider": False,
                },
            }
        },
    )
    assert status == 200, body
    if card and wait_for is not None:
        wait_for(lambda: payment_methods(stripe_org, external_id) or None)
    return str(existing.id)


def payment_methods(org: Any, external_id: str) -> list[dict[str, Any]]:
    status, body = org.api.get(f"/customers/{external_id}/payment_methods")
    return body["payment_methods"] if status == 200 else []  # type: ignore[no-any-return]


def invoices_of(org: Any, external_customer_id: str) -> list[dict[str, Any]]:
    status, body = org.api.get(f"/invoices?external_customer_id={external_customer_id}")
    assert status == 200, body
    return body["invoices"]  # type: ignore[no-any-return]


def webhooks(receiver: Any, webhook_type: str) -> list[dict[str, Any]]:
    bodies = [json.loads(request.body) for request in receiver.requests]
    return [body for body in bodies if body["webhook_type"] == webhook_type]


def payment_intents(stripe_org: StripeOrg, stripe_customer_id: str) -> list[dict[str, Any]]:
    listed = stripe_org.stripe.v1.payment_intents.list(
        params={"customer": stripe_customer_id, "limit": 100}
    )
    return [intent.to_dict() for intent in listed.data]


def next_month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def wait_payment_status(org: Any, lago_id: str, status: str, wait_for: Any) -> dict[str, Any]:
    """The invoice, once its payment status is ``status`` (charging is asynchronous)."""

    def reached() -> dict[str, Any] | None:
        code, body = org.api.get(f"/invoices/{lago_id}")
        assert code == 200, body
        return body["invoice"] if body["invoice"]["payment_status"] == status else None

    return wait_for(reached)  # type: ignore[no-any-return]
