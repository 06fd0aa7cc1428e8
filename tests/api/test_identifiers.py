"""Every id Billow accepts can be reached again through a percent-encoded URL; an id that
could not be (``/ ? # \\ %``, control characters, dot segments) is refused when the object
is created, and nothing is stored."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given

from tests.api.test_no_input_breaks_the_api import EXAMPLES, odd_text

ODD_IDS = [
    "two words",
    " padded ",
    "a+b",
    "tag:a@b,c;d=e&f",
    'say "hi", it\'s',
    "(x)[y]{z}<w>",
    "!$*~^|`",
    "é-€-λ-世界-😀",
    "zero\u200bwidth",
    "é" * 255,
]
"""Ids a client may well use: all reachable. The last is as long as an id may be."""

UNREACHABLE_IDS = [
    "a/b",
    "a?b",
    "a#b",
    "a\\b",
    "100%",
    "a%41",
    "nul\x00here",
    "del\x7f",
    "line\nbreak",
    "tab\there",
    "c1\x85",
]


def q(identifier: str) -> str:
    return quote(identifier, safe="")


def ok(answer: tuple[int, Any]) -> Any:
    status, body = answer
    assert status == 200, body
    return body


def create_everything(org: Any, identifier: str) -> dict[str, Any]:
    """A tax, plan, add-on, coupon, customer and subscription all named ``identifier``, a
    coupon granted and a one-off invoice, all through the API; what the ids lead to."""
    ok(org.api.post("/taxes", json={"tax": {"name": "T", "code": identifier, "rate": "20"}}))
    plan = {
        "name": "P",
        "code": identifier,
        "interval": "monthly",
        "amount_cents": 1000,
        "amount_currency": "EUR",
        "tax_codes": [identifier],
    }
    ok(org.api.post("/plans", json={"plan": plan}))
    add_on = {"name": "A", "code": identifier, "amount_cents": 500, "amount_currency": "EUR"}
    ok(org.api.post("/add_ons", json={"add_on": add_on}))
    coupon = {
        "name": "C",
        "code": identifier,
        "coupon_type": "fixed_amount",
        "amount_cents": 100,
        "amount_currency": "EUR",
        "frequency": "forever",
        "expiration": "no_expiration",
        "applies_to": {"plan_codes": [identifier]},
    }
    ok(org.api.post("/coupons", json={"coupon": coupon}))
    customer = {"external_id": identifier, "currency": "EUR", "tax_codes": [identifier]}
    ok(org.api.post("/customers", json={"customer": customer}))
    subscription = {
        "external_customer_id": identifier,
        "plan_code": identifier,
        "external_id": identifier,
    }
    ok(org.api.post("/subscriptions", json={"subscription": subscription}))
    applied = ok(
        org.api.post(
            "/applied_coupons",
            json={
                "applied_coupon": {"external_customer_id": identifier, "coupon_code": identifier}
            },
        )
    )["applied_coupon"]
    fee = {"add_on_code": identifier, "tax_codes": [identifier]}
    invoice = ok(
        org.api.post(
            "/invoices", json={"invoice": {"external_customer_id": identifier, "fees": [fee]}}
        )
    )["invoice"]
    return {"applied_coupon": applied["lago_id"], "invoice": invoice["lago_id"]}


@pytest.mark.parametrize("identifier", ODD_IDS, ids=range(len(ODD_IDS)))
def test_every_object_made_with_an_odd_id_can_be_read_changed_and_deleted(
    org: Any, identifier: str
) -> None:
    made = create_everything(org, identifier)
    i = q(identifier)

    for path, wrapper, field in (
        (f"/taxes/{i}", "tax", "code"),
        (f"/plans/{i}", "plan", "code"),
        (f"/add_ons/{i}", "add_on", "code"),
        (f"/coupons/{i}", "coupon", "code"),
        (f"/customers/{i}", "customer", "external_id"),
        (f"/subscriptions/{i}", "subscription", "external_id"),
    ):
        assert ok(org.api.get(path))[wrapper][field] == identifier, path
    assert ok(org.api.get(f"/customers/{i}/subscriptions"))["meta"]["total_count"] == 1
    assert ok(org.api.get(f"/customers/{i}/invoices"))["invoices"][0]["lago_id"] == made["invoice"]
    assert ok(org.api.get(f"/customers/{i}/applied_coupons"))["meta"]["total_count"] == 1
    assert ok(org.api.get(f"/customers/{i}/payment_methods"))["payment_methods"] == []
    listed = ok(org.api.get(f"/subscriptions?{urlencode({'plan_code': identifier})}"))
    assert [s["external_id"] for s in listed["subscriptions"]] == [identifier]
    invoices = ok(org.api.get(f"/invoices?{urlencode({'external_customer_id': identifier})}"))
    assert [invoice["lago_id"] for invoice in invoices["invoices"]] == [made["invoice"]]

    for path, wrapper in (
        (f"/taxes/{i}", "tax"),
        (f"/plans/{i}", "plan"),
        (f"/add_ons/{i}", "add_on"),
        (f"/coupons/{i}", "coupon"),
        (f"/subscriptions/{i}", "subscription"),
    ):
        changed = ok(org.api.put(path, json={wrapper: {"name": "Renamed"}}))
        assert changed[wrapper]["name"] == "Renamed", path
    renamed = ok(org.api.post("/customers", json={"customer": {"external_id": identifier}}))
    assert (
        renamed["customer"]["lago_id"] == ok(org.api.get(f"/customers/{i}"))["customer"]["lago_id"]
    )

    ok(org.api.delete(f"/customers/{i}/applied_coupons/{made['applied_coupon']}"))
    ok(org.api.delete(f"/subscriptions/{i}?on_termination_invoice=skip"))
    assert ok(org.api.get(f"/subscriptions/{i}"))["subscription"]["status"] == "terminated"
    for path in (
        f"/coupons/{i}",
        f"/add_ons/{i}",
        f"/plans/{i}",
        f"/taxes/{i}",
        f"/customers/{i}",
    ):
        ok(org.api.delete(path))
    for path in (f"/coupons/{i}", f"/add_ons/{i}", f"/plans/{i}", f"/taxes/{i}", f"/customers/{i}"):
        assert org.api.get(path)[0] == 404, path


def creations(identifier: str) -> list[tuple[str, dict[str, Any], str, str]]:
    """(path, body, refused field, listing) for each object a client names."""
    return [
        ("/customers", {"customer": {"external_id": identifier}}, "external_id", "/customers"),
        ("/taxes", {"tax": {"name": "T", "code": identifier, "rate": "5"}}, "code", "/taxes"),
        (
            "/plans",
            {
                "plan": {
                    "name": "P",
                    "code": identifier,
                    "interval": "monthly",
                    "amount_cents": 1,
                    "amount_currency": "EUR",
                }
            },
            "code",
            "/plans",
        ),
        (
            "/add_ons",
            {
                "add_on": {
                    "name": "A",
                    "code": identifier,
                    "amount_cents": 1,
                    "amount_currency": "EUR",
                }
            },
            "code",
            "/add_ons",
        ),
        (
            "/coupons",
            {
                "coupon": {
                    "name": "C",
                    "code": identifier,
                    "coupon_type": "percentage",
                    "percentage_rate": "5",
                    "frequency": "once",
                    "expiration": "no_expiration",
                }
            },
            "code",
            "/coupons",
        ),
        (
            "/subscriptions",
            {
                "subscription": {
                    "external_customer_id": "holder",
                    "plan_code": "holder",
                    "external_id": identifier,
                }
            },
            "external_id",
            "/subscriptions?status[]=active&status[]=pending",
        ),
    ]


@pytest.mark.parametrize(
    ("identifier", "code"),
    [(identifier, "invalid_characters") for identifier in UNREACHABLE_IDS]
    + [(".", "value_is_invalid"), ("..", "value_is_invalid")],
    ids=[repr(identifier) for identifier in UNREACHABLE_IDS] + ["dot", "dot-dot"],
)
def test_an_id_no_url_could_reach_is_refused_and_nothing_is_stored(
    org: Any, identifier: str, code: str
) -> None:
    ok(org.api.post("/customers", json={"customer": {"external_id": "holder"}}))
    plan = {
        "name": "H",
        "code": "holder",
        "interval": "monthly",
        "amount_cents": 1,
        "amount_currency": "EUR",
    }
    ok(org.api.post("/plans", json={"plan": plan}))
    before = {listing: ok(org.api.get(listing)) for _, _, _, listing in creations(identifier)}

    for path, body, field, _ in creations(identifier):
        status, answer = org.api.post(path, json=body)
        assert status == 422, (path, answer)
        assert answer["code"] == "validation_errors"
        assert answer["error_details"] == {field: [code]}, (path, answer)
    status, answer = org.api.put("/plans/holder", json={"plan": {"code": identifier}})
    assert (status, answer["error_details"]) == (422, {"code": [code]})

    for _, _, _, listing in creations(identifier):
        assert ok(org.api.get(listing)) == before[listing], listing
    assert ok(org.api.get("/plans/holder"))["plan"]["code"] == "holder"


@EXAMPLES
@given(identifier=odd_text)
def test_any_id_is_either_refused_or_reachable(org: Any, identifier: str) -> None:
    status, body = org.api.post("/customers", json={"customer": {"external_id": identifier}})
    if status == 422:
        assert set(body["error_details"]) == {"external_id"}, body
        return
    assert status == 200, body
    status, found = org.api.get(f"/customers/{q(identifier)}")
    assert status == 200, (identifier, found)
    assert found["customer"]["external_id"] == identifier
    assert org.api.delete(f"/customers/{q(identifier)}")[0] == 200
