"""Pure domain rules: signatures, backoff, prefixes, pagination, overdue invoices."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date

import pytest

from billow.api.pagination import paginate
from billow.api.query import whole_number_or
from billow.domain import stripe_signature
from billow.domain.integrations import secret_key_problem
from billow.domain.invoices import Invoice
from billow.domain.organizations import document_prefix, hash_api_key
from billow.domain.webhooks import envelope, retry_delay_s, sign


def _stripe_header(body: bytes, secret: str, at: int) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1=deadbeef,v1={digest}"


def test_stripe_signature_accepts_any_matching_v1_within_tolerance() -> None:
    body = b'{"id": "evt_1"}'
    stripe_signature.verify(body, _stripe_header(body, "whsec_a", 1000), "whsec_a", now=1000 + 300)


@pytest.mark.parametrize(
    ("header", "now"),
    [
        (None, 1000),
        ("", 1000),
        ("v1=abc", 1000),
        ("t=1000", 1000),
        (_stripe_header(b"other", "whsec_a", 1000), 1000),
        (_stripe_header(b'{"id": "evt_1"}', "whsec_b", 1000), 1000),
        (_stripe_header(b'{"id": "evt_1"}', "whsec_a", 1000), 1301),
        (_stripe_header(b'{"id": "evt_1"}', "whsec_a", 1000), 699),
    ],
)
def test_stripe_signature_rejects(header: str | None, now: int) -> None:
    with pytest.raises(stripe_signature.SignatureError):
        stripe_signature.verify(b'{"id": "evt_1"}', header, "whsec_a", now=now)


def test_lago_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"webhook_type":"customer.created"}'
    expected = base64.b64encode(hmac.new(b"key", body, hashlib.sha256).digest()).decode()
    assert sign(body, "key") == expected


def test_envelope_nests_the_object_under_its_type() -> None:
    assert envelope("customer.created", "customer", "org", {"a": 1}) == {
        "webhook_type": "customer.created",
        "object_type": "customer",
        "organization_id": "org",
        "customer": {"a": 1},
    }


def test_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay_s(attempt, 30) for attempt in range(1, 6)] == [30, 60, 120, 240, 480]
    assert retry_delay_s(40, 30) == 43_200
    assert retry_delay_s(3, 0) == 0


def test_secret_key_checks() -> None:
    assert secret_key_problem("pk_test_123") == "publishable_key_not_allowed"
    assert secret_key_problem("whatever") == "invalid_secret_key"
    assert secret_key_problem("sk_test_abc123") is None
    assert secret_key_problem("rk_live_abc123") is None


def test_prefix_and_key_hash() -> None:
    assert document_prefix("Acme Corp", "0000-1234-abcd") == "ACM-ABCD"
    assert document_prefix("!!", "xyz9") == "ORG-XYZ9"
    assert hash_api_key("k") == hashlib.sha256(b"k").hexdigest()


def test_paginate_meta() -> None:
    items = list(range(45))
    shown, meta = paginate(items, 3, 20)
    assert shown == list(range(40, 45))
    assert meta == {
        "current_page": 3,
        "next_page": None,
        "prev_page": 2,
        "total_pages": 3,
        "total_count": 45,
    }
    assert paginate([], 1, 20)[1]["total_pages"] == 0


def _invoice(**changes: object) -> Invoice:
    fields: dict[str, object] = {
        "lago_id": "inv",
        "organization_id": "org",
        "sequential_id": 1,
        "number": "ORG-202405-001",
        "invoice_type": "one_off",
        "currency": "EUR",
        "issuing_date": "2024-05-01",
        "payment_due_date": "2024-05-31",
        "lago_customer_id": "cus",
        "external_customer_id": "acme",
        "fees": [],
        "fees_amount_cents": 1000,
        "sub_total_excluding_taxes_amount_cents": 1000,
        "sub_total_including_taxes_amount_cents": 1000,
        "total_amount_cents": 1000,
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-01T10:00:00Z",
    }
    return Invoice.model_validate({**fields, **changes})


def test_an_invoice_is_overdue_once_its_due_date_has_passed_unpaid() -> None:
    invoice = _invoice()
    assert not invoice.is_payment_overdue(date(2024, 5, 31))  # due today: not yet
    assert invoice.is_payment_overdue(date(2024, 6, 1))
    assert invoice.as_lago(today=date(2024, 6, 1))["payment_overdue"] is True
    # Without a day, the invoice is judged on the day of its last change (a webhook's view).
    assert invoice.as_lago()["payment_overdue"] is False
    assert _invoice(updated_at="2024-06-02T08:00:00Z").as_lago()["payment_overdue"] is True
    for settled in ({"payment_status": "succeeded"}, {"status": "voided"}):
        assert not _invoice(**settled).is_payment_overdue(date(2024, 6, 1)), settled
    assert _invoice(payment_status="failed").is_payment_overdue(date(2024, 6, 1))


@pytest.mark.parametrize(
    ("raw", "page", "per_page"),
    [
        ("7", 7, 7),
        ("0", 1, 20),
        ("-3", 1, 20),
        ("null", 1, 20),
        (" 2 ", 2, 2),
        ("1.5", 1, 20),
        ("5000", 5000, 100),
        ("9" * 30, 1_000_000, 100),
    ],
)
def test_page_values_lago_cannot_use_fall_back_to_defaults(
    raw: str, page: int, per_page: int
) -> None:
    assert whole_number_or(1, highest=1_000_000)(raw) == page
    assert whole_number_or(20, highest=100)(raw) == per_page
