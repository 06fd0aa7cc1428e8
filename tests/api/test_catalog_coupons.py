"""Coupons and the coupons granted to customers, with Lago's refusals."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.test_catalog_plans import create_plan
from tests.api.test_catalog_taxes import fields
from tests.api.test_errors_and_tenancy import raw

FIXED = {
    "name": "Welcome",
    "code": "welcome",
    "coupon_type": "fixed_amount",
    "amount_cents": 1000,
    "amount_currency": "EUR",
    "frequency": "once",
    "expiration": "no_expiration",
}
PERCENT = {
    "name": "Ten percent",
    "code": "ten",
    "coupon_type": "percentage",
    "percentage_rate": "10",
    "frequency": "recurring",
    "frequency_duration": 3,
    "expiration": "time_limit",
    "expiration_at": "2099-01-01T00:00:00Z",
}


def create_coupon(org: Any, base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    status, body = org.api.post("/coupons", json={"coupon": {**base, **changes}})
    assert status == 200, body
    return body["coupon"]  # type: ignore[no-any-return]


def customer(org: Any, external_id: str = "cust", **fields: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": external_id, **fields}}
    )
    assert status == 200, body
    return body["customer"]  # type: ignore[no-any-return]


def apply(org: Any, **applied: Any) -> tuple[int, Any]:
    return org.api.post(  # type: ignore[no-any-return]
        "/applied_coupons",
        json={"applied_coupon": {"external_customer_id": "cust", **applied}},
    )


def test_coupon_crud_is_lago_shaped(org: Any) -> None:
    fixed = create_coupon(org, FIXED, description="First month")
    assert fixed["amount_cents"] == 1000 and fixed["percentage_rate"] is None
    assert fixed["reusable"] is True and fixed["limited_plans"] is False
    assert fixed["terminated_at"] is None and fixed["expiration_at"] is None

    percent = create_coupon(org, PERCENT, amount_cents=5)
    assert percent["percentage_rate"] == "10" and percent["amount_cents"] is None
    assert percent["frequency_duration"] == 3
    assert percent["expiration_at"] == "2099-01-01T00:00:00Z"
    assert org.api.get("/coupons/ten")[1]["coupon"] == percent

    status, body = org.api.put(
        "/coupons/ten", json={"coupon": {"name": "Eleven", "percentage_rate": 11.5}}
    )
    assert status == 200
    assert body["coupon"]["name"] == "Eleven" and body["coupon"]["percentage_rate"] == "11.5"
    assert org.api.get("/coupons")[1]["meta"]["total_count"] == 2

    status, body = org.api.delete("/coupons/welcome")
    assert status == 200 and body["coupon"]["terminated_at"] is not None
    status, body = org.api.get("/coupons/welcome")
    assert status == 404 and body["code"] == "coupon_not_found"
    assert org.api.get("/coupons")[1]["meta"]["total_count"] == 1
    create_coupon(org, FIXED)  # the code is free again


def test_coupon_validation_changes_nothing(org: Any) -> None:
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"coupon_type": "gift"}, {"coupon_type"}),
        ({"amount_cents": None}, {"amount_cents"}),
        ({"amount_currency": "XYZ"}, {"amount_currency"}),
        ({"coupon_type": "percentage", "percentage_rate": "150"}, {"percentage_rate"}),
        ({"coupon_type": "percentage"}, {"percentage_rate"}),
        ({"frequency": "recurring"}, {"frequency_duration"}),
        ({"frequency": "recurring", "frequency_duration": 0}, {"frequency_duration"}),
        ({"expiration": "time_limit"}, {"expiration_at"}),
        ({"expiration": "time_limit", "expiration_at": "2001-01-01T00:00:00Z"}, {"expiration_at"}),
        ({"expiration": "time_limit", "expiration_at": "soon"}, {"expiration_at"}),
        ({"applies_to": {"billable_metric_codes": ["api_calls"]}}, {"billable_metric_codes"}),
        ({"reusable": "no"}, {"reusable"}),
    ]
    for changes, named in cases:
        status, body = org.api.post("/coupons", json={"coupon": {**FIXED, **changes}})
        assert status == 422 and fields(body) == named, (changes, body)
    status, body = org.api.post(
        "/coupons", json={"coupon": {**FIXED, "applies_to": {"plan_codes": ["nope"]}}}
    )
    assert status == 404 and body["code"] == "plans_not_found"
    assert org.api.get("/coupons")[1]["meta"]["total_count"] == 0
    create_coupon(org, FIXED)
    status, body = org.api.post("/coupons", json={"coupon": FIXED})
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}
    limited = {"coupon": {"applies_to": {"plan_codes": ["nope"]}}}
    status, body = org.api.put("/coupons/welcome", json=limited)
    assert status == 404 and body["code"] == "plans_not_found"
    assert org.api.get("/coupons/welcome")[1]["coupon"]["limited_plans"] is False


def test_applying_a_coupon_with_overrides(org: Any) -> None:
    cust = customer(org, currency="EUR")
    create_coupon(org, FIXED)
    status, body = apply(org, coupon_code="welcome", amount_cents=500)
    assert status == 200, body
    applied = body["applied_coupon"]
    assert applied["lago_customer_id"] == cust["lago_id"]
    assert applied["external_customer_id"] == "cust" and applied["coupon_code"] == "welcome"
    assert applied["status"] == "active" and applied["coupon_status"] == "active"
    assert applied["amount_cents"] == 500 and applied["amount_cents_remaining"] == 500
    assert applied["amount_currency"] == "EUR" and applied["frequency"] == "once"

    create_coupon(org, PERCENT)
    status, body = apply(org, coupon_code="ten", percentage_rate="25", frequency_duration=6)
    assert status == 200, body
    applied = body["applied_coupon"]
    assert applied["percentage_rate"] == "25" and applied["amount_cents"] is None
    assert applied["frequency_duration"] == applied["frequency_duration_remaining"] == 6
    assert applied["expiration_at"] == "2099-01-01T00:00:00Z"


def test_applying_a_coupon_is_refused_as_lago_refuses_it(org: Any) -> None:
    status, body = apply(org, coupon_code="welcome")
    assert status == 404 and body["code"] == "customer_not_found"
    customer(org, currency="USD")
    status, body = apply(org, coupon_code="welcome")
    assert status == 404 and body["code"] == "coupon_not_found"

    create_coupon(org, FIXED)
    status, body = apply(org, coupon_code="welcome")
    assert status == 422 and body["error_details"] == {"currency": ["currencies_does_not_match"]}
    assert apply(org, coupon_code="welcome", amount_currency="USD")[0] == 200

    create_coupon(org, FIXED, code="single", reusable=False, amount_currency="USD")
    assert apply(org, coupon_code="single")[0] == 200
    status, body = apply(org, coupon_code="single")
    assert status == 422 and body["error_details"] == {"coupon": ["coupon_is_not_reusable"]}

    create_plan(org, code="basic")
    create_plan(org, code="pro")
    limited = {**PERCENT, "expiration": "no_expiration"}
    create_coupon(org, limited, code="p1", applies_to={"plan_codes": ["basic", "pro"]})
    create_coupon(org, limited, code="p2", applies_to={"plan_codes": ["pro"]})
    create_coupon(org, limited, code="p3")
    assert apply(org, coupon_code="p1")[0] == 200
    status, body = apply(org, coupon_code="p2")
    assert status == 422 and body["error_details"] == {"coupon": ["plan_overlapping"]}
    assert apply(org, coupon_code="p3")[0] == 200  # unlimited coupons never overlap

    org.api.delete("/coupons/p2")
    status, body = apply(org, coupon_code="p2")
    assert status == 404 and body["code"] == "coupon_not_found"
    listed = org.api.get("/customers/cust/applied_coupons")[1]
    assert listed["meta"]["total_count"] == 4


def test_a_non_reusable_coupon_applied_concurrently_is_granted_once(org: Any) -> None:
    customer(org, currency="EUR")
    create_coupon(org, FIXED, reusable=False)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(lambda _: apply(org, coupon_code="welcome")[0], range(6)))
    assert statuses.count(200) == 1 and set(statuses) <= {200, 422, 503}
    assert org.api.get("/applied_coupons")[1]["meta"]["total_count"] == 1


def test_listing_filtering_and_terminating_applied_coupons(org: Any) -> None:
    customer(org)
    customer(org, "other")
    create_coupon(org, PERCENT)
    create_coupon(org, PERCENT, code="five", percentage_rate=5)
    first = apply(org, coupon_code="ten")[1]["applied_coupon"]
    apply(org, coupon_code="five")
    apply(org, coupon_code="ten", external_customer_id="other")

    everything = org.api.get("/applied_coupons")[1]
    assert (
        everything["meta"]["total_count"] == 3 and everything["applied_coupons"][0]["credits"] == []
    )
    mine = org.api.get("/applied_coupons?external_customer_id=cust")[1]
    assert {a["coupon_code"] for a in mine["applied_coupons"]} == {"ten", "five"}
    by_code = org.api.get("/applied_coupons?coupon_code[]=ten")[1]
    assert {a["external_customer_id"] for a in by_code["applied_coupons"]} == {"cust", "other"}
    assert org.api.get("/applied_coupons?external_customer_id=nobody")[1]["applied_coupons"] == []
    # Lago ignores what it cannot use: an unknown status and a per_page of null.
    ignored = org.api.get("/applied_coupons?status=expired&per_page=null&page=x")
    assert ignored[0] == 200 and ignored[1]["meta"]["total_count"] == 3

    path = f"/customers/cust/applied_coupons/{first['lago_id']}"
    assert org.api.delete(f"/customers/other/applied_coupons/{first['lago_id']}")[0] == 404
    status, body = org.api.delete(path)
    assert status == 200
    assert body["applied_coupon"]["status"] == "terminated"
    assert body["applied_coupon"]["terminated_at"] is not None
    status, body = org.api.delete("/customers/cust/applied_coupons/missing")
    assert status == 404 and body["code"] == "applied_coupon_not_found"
    active = org.api.get("/customers/cust/applied_coupons?status=active")[1]
    assert [a["coupon_code"] for a in active["applied_coupons"]] == ["five"]
    terminated = org.api.get("/applied_coupons?status=terminated")[1]
    assert [a["lago_id"] for a in terminated["applied_coupons"]] == [first["lago_id"]]
    status, body = org.api.get("/customers/nobody/applied_coupons")
    assert status == 404 and body["code"] == "customer_not_found"


def test_deleted_coupons_keep_working_for_customers_who_have_them(org: Any) -> None:
    customer(org)
    create_coupon(org, PERCENT)
    applied = apply(org, coupon_code="ten")[1]["applied_coupon"]
    org.api.delete("/coupons/ten")
    shown = org.api.get("/customers/cust/applied_coupons")[1]["applied_coupons"][0]
    assert shown["lago_id"] == applied["lago_id"] and shown["status"] == "active"
    assert shown["coupon_status"] == "terminated" and shown["coupon_deleted_at"] is not None


def test_granted_coupons_keep_their_terms(org: Any) -> None:
    customer(org)
    create_coupon(org, PERCENT)
    apply(org, coupon_code="ten")
    status, body = org.api.put(
        "/coupons/ten",
        json={"coupon": {"name": "Renamed", "code": "eleven", "percentage_rate": "50"}},
    )
    assert status == 200
    coupon = body["coupon"]
    assert coupon["name"] == "Renamed"
    assert coupon["code"] == "ten" and coupon["percentage_rate"] == "10"


def test_renamed_plan_keeps_its_coupon_limitations(org: Any) -> None:
    customer(org)
    create_plan(org, code="basic")
    limited = {**PERCENT, "applies_to": {"plan_codes": ["basic"]}}
    create_coupon(org, limited)
    apply(org, coupon_code="ten")
    org.api.put("/plans/basic", json={"plan": {"code": "essential"}})
    assert org.api.get("/coupons/ten")[1]["coupon"]["plan_codes"] == ["essential"]
    create_coupon(org, limited, code="again", applies_to={"plan_codes": ["essential"]})
    status, body = apply(org, coupon_code="again")
    assert status == 422 and body["error_details"] == {"coupon": ["plan_overlapping"]}


def test_another_organizations_coupons_are_404(org: Any, local_billow: Any) -> None:
    customer(org)
    create_coupon(org, FIXED)
    applied = apply(org, coupon_code="welcome")[1]["applied_coupon"]
    other = local_billow.create_organization("Other")
    assert raw(local_billow, "GET", "/api/v1/coupons/welcome", key=other.api_key)[0] == 404
    assert (
        raw(local_billow, "GET", "/api/v1/applied_coupons", key=other.api_key)[1]["applied_coupons"]
        == []
    )
    path = f"/api/v1/customers/cust/applied_coupons/{applied['lago_id']}"
    assert raw(local_billow, "DELETE", path, key=other.api_key)[0] == 404
    status, body = raw(
        local_billow,
        "POST",
        "/api/v1/applied_coupons",
        body=b'{"applied_coupon": {"external_customer_id": "cust", "coupon_code": "welcome"}}',
        key=other.api_key,
    )
    assert status == 404 and body["code"] == "customer_not_found"
    assert org.api.get("/applied_coupons")[1]["meta"]["total_count"] == 1
