"""Whatever a client sends to the catalog's endpoints, the answer is a Lago-shaped 4xx or a
success, never a 500 (the catalog's part of test_no_input_breaks_the_api)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.api.test_no_input_breaks_the_api import (
    EXAMPLES,
    assert_lago_answer,
    json_values,
    raw_bodies,
    send,
)

WORDS = [
    "EUR",
    "JPY",
    "monthly",
    "yearly",
    "semiannual",
    "fixed_amount",
    "percentage",
    "once",
    "recurring",
    "forever",
    "time_limit",
    "no_expiration",
    "2099-01-01T00:00:00Z",
    "2001-01-01",
    "12.5",
    "1e400",
    "vat",
    "basic",
    "promo",
    "cust",
]
values = (
    json_values
    | st.sampled_from(WORDS)
    | st.integers(min_value=-2, max_value=2**64)
    | st.lists(st.sampled_from(WORDS), max_size=3)
    | st.fixed_dictionaries({"plan_codes": st.lists(st.sampled_from(WORDS), max_size=2)})
)

TAX = ["name", "code", "rate", "description", "applied_to_organization"]
PLAN = [
    "name",
    "invoice_display_name",
    "code",
    "interval",
    "description",
    "amount_cents",
    "amount_currency",
    "trial_period",
    "pay_in_advance",
    "tax_codes",
    "charges",
    "minimum_commitment",
]
ADD_ON = ["name", "invoice_display_name", "code", "amount_cents", "amount_currency", "tax_codes"]
COUPON = [
    "name",
    "code",
    "coupon_type",
    "amount_cents",
    "amount_currency",
    "percentage_rate",
    "frequency",
    "frequency_duration",
    "reusable",
    "expiration",
    "expiration_at",
    "applies_to",
]
APPLIED = [
    "external_customer_id",
    "coupon_code",
    "amount_cents",
    "amount_currency",
    "percentage_rate",
    "frequency",
    "frequency_duration",
]


def bodies(wrapper: str, fields: list[str]) -> st.SearchStrategy[Any]:
    objects = st.dictionaries(st.sampled_from(fields) | st.text(max_size=8), values, max_size=8)
    return st.fixed_dictionaries({wrapper: objects | json_values}) | raw_bodies


@pytest.fixture
def stocked(org: Any) -> Any:
    """An organization with one object of each kind, for updates to aim at."""
    for path, body in (
        ("/taxes", {"tax": {"name": "VAT", "code": "vat", "rate": "20"}}),
        (
            "/plans",
            {
                "plan": {
                    "name": "Basic",
                    "code": "basic",
                    "interval": "monthly",
                    "amount_cents": 100,
                    "amount_currency": "EUR",
                }
            },
        ),
        (
            "/add_ons",
            {"add_on": {"name": "A", "code": "a", "amount_cents": 1, "amount_currency": "EUR"}},
        ),
        (
            "/coupons",
            {
                "coupon": {
                    "name": "Promo",
                    "code": "promo",
                    "coupon_type": "percentage",
                    "percentage_rate": "10",
                    "frequency": "forever",
                    "expiration": "no_expiration",
                }
            },
        ),
        ("/customers", {"customer": {"external_id": "cust"}}),
    ):
        assert org.api.post(path, body)[0] == 200
    return org


def check(local_billow: Any, org: Any, method: str, path: str, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert_lago_answer(*send(f"{local_billow.api_url}/api/v1{path}", org.api_key, method, raw))


@EXAMPLES
@given(body=bodies("tax", TAX), put=st.booleans())
def test_tax_bodies(stocked: Any, local_billow: Any, body: Any, put: bool) -> None:
    check(local_billow, stocked, "PUT" if put else "POST", "/taxes/vat" if put else "/taxes", body)


@EXAMPLES
@given(body=bodies("plan", PLAN), put=st.booleans())
def test_plan_bodies(stocked: Any, local_billow: Any, body: Any, put: bool) -> None:
    check(
        local_billow, stocked, "PUT" if put else "POST", "/plans/basic" if put else "/plans", body
    )


@EXAMPLES
@given(body=bodies("add_on", ADD_ON), put=st.booleans())
def test_add_on_bodies(stocked: Any, local_billow: Any, body: Any, put: bool) -> None:
    path = "/add_ons/a" if put else "/add_ons"
    check(local_billow, stocked, "PUT" if put else "POST", path, body)


@EXAMPLES
@given(body=bodies("coupon", COUPON), put=st.booleans())
def test_coupon_bodies(stocked: Any, local_billow: Any, body: Any, put: bool) -> None:
    path = "/coupons/promo" if put else "/coupons"
    check(local_billow, stocked, "PUT" if put else "POST", path, body)


@EXAMPLES
@given(body=bodies("applied_coupon", APPLIED))
def test_applied_coupon_bodies(stocked: Any, local_billow: Any, body: Any) -> None:
    check(local_billow, stocked, "POST", "/applied_coupons", body)


@EXAMPLES
@given(
    segment=st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s),
    query=st.text(max_size=30),
)
def test_catalog_paths_and_queries(
    stocked: Any, local_billow: Any, segment: str, query: str
) -> None:
    for path in ("/taxes", "/plans", "/add_ons", "/coupons", "/customers/cust/applied_coupons"):
        url = f"{path}/{quote(segment, safe='')}?{quote(query, safe='=&')}"
        check(local_billow, stocked, "GET", url, b"")
    check(local_billow, stocked, "GET", f"/applied_coupons?{quote(query, safe='=&[]')}", b"")
