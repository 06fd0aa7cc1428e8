"""Taxes, add-ons and customers' tax codes through the Lago API."""

from __future__ import annotations

from typing import Any

from tests.api.dynamodb_calls import dynamodb_calls
from tests.api.test_errors_and_tenancy import raw


def fields(body: dict[str, Any]) -> set[str]:
    """The fields a 422 names."""
    return set(body["error_details"])


def create_tax(org: Any, code: str, rate: Any = "20", **extra: Any) -> dict[str, Any]:
    status, body = org.api.post(
        "/taxes", json={"tax": {"name": f"Tax {code}", "code": code, "rate": rate, **extra}}
    )
    assert status == 200, body
    return body["tax"]  # type: ignore[no-any-return]


def test_tax_crud_by_code(org: Any) -> None:
    tax = create_tax(org, "vat_fr", "20.5", description="French VAT")
    assert tax["rate"] == 20.5 and tax["description"] == "French VAT"
    assert tax["applied_to_organization"] is False
    assert tax["customers_count"] == tax["plans_count"] == tax["add_ons_count"] == 0
    assert org.api.get("/taxes/vat_fr")[1]["tax"]["lago_id"] == tax["lago_id"]

    status, body = org.api.put(
        "/taxes/vat_fr", json={"tax": {"rate": 5.5, "applied_to_organization": True}}
    )
    assert status == 200
    assert body["tax"]["rate"] == 5.5 and body["tax"]["name"] == "Tax vat_fr"
    assert body["tax"]["applied_to_organization"] is True

    create_tax(org, "vat_de", 19)
    listed = org.api.get("/taxes?per_page=1")[1]
    assert listed["meta"]["total_count"] == 2 and len(listed["taxes"]) == 1

    assert org.api.delete("/taxes/vat_fr")[1]["tax"]["code"] == "vat_fr"
    status, body = org.api.get("/taxes/vat_fr")
    assert status == 404 and body["code"] == "tax_not_found"
    assert org.api.get("/taxes")[1]["meta"]["total_count"] == 1


def test_tax_validation_and_uniqueness_change_nothing(org: Any) -> None:
    create_tax(org, "vat")
    status, body = org.api.post("/taxes", json={"tax": {"name": "Again", "code": "vat", "rate": 1}})
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}
    for rate in ("abc", -1, 100.5, True, "NaN"):
        status, body = org.api.post(
            "/taxes", json={"tax": {"name": "Bad", "code": "bad", "rate": rate}}
        )
        assert status == 422 and fields(body) == {"rate"}, (rate, body)
    status, body = org.api.post("/taxes", json={"tax": {"code": "x", "rate": "1"}})
    assert status == 422 and body["error_details"] == {"name": ["value_is_mandatory"]}
    status, body = org.api.post("/taxes", json={"name": "unwrapped"})
    assert status == 400 and body["error_details"] == {"tax": ["value_is_mandatory"]}
    assert org.api.put("/taxes/missing", json={"tax": {"rate": 1}})[0] == 404
    assert org.api.delete("/taxes/missing")[0] == 404
    assert org.api.get("/taxes")[1]["meta"]["total_count"] == 1
    assert org.api.get("/taxes/vat")[1]["tax"]["rate"] == 20


def test_customer_tax_codes_are_checked_and_shown_as_taxes(org: Any) -> None:
    create_tax(org, "vat", "20")
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "c1", "tax_codes": ["vat", "nope"]}}
    )
    assert status == 404 and body["code"] == "tax_not_found"
    assert org.api.get("/customers/c1")[0] == 404

    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "c1", "tax_codes": ["vat", "vat"]}}
    )
    assert status == 200
    assert [tax["code"] for tax in body["customer"]["taxes"]] == ["vat"]
    assert body["customer"]["taxes"][0]["rate"] == 20
    shown = org.api.get("/customers/c1")[1]["customer"]
    assert [tax["code"] for tax in shown["taxes"]] == ["vat"]
    assert [t["code"] for t in org.api.get("/customers")[1]["customers"][0]["taxes"]] == ["vat"]
    assert org.api.get("/taxes/vat")[1]["tax"]["customers_count"] == 1

    # an update that leaves tax_codes out keeps them; an empty list removes them
    body = org.api.post("/customers", json={"customer": {"external_id": "c1", "name": "N"}})[1]
    assert [tax["code"] for tax in body["customer"]["taxes"]] == ["vat"]
    body = org.api.post("/customers", json={"customer": {"external_id": "c1", "tax_codes": []}})[1]
    assert body["customer"]["taxes"] == []
    assert org.api.get("/taxes/vat")[1]["tax"]["customers_count"] == 0


def test_renaming_or_deleting_a_tax_follows_through_to_its_holders(org: Any) -> None:
    create_tax(org, "old")
    create_tax(org, "other", "5")
    org.api.post("/customers", json={"customer": {"external_id": "c", "tax_codes": ["old"]}})
    status, body = org.api.post(
        "/add_ons",
        json={
            "add_on": {
                "name": "Setup",
                "code": "setup",
                "amount_cents": 1000,
                "amount_currency": "EUR",
                "tax_codes": ["old", "other"],
            }
        },
    )
    assert status == 200, body
    counts = org.api.get("/taxes/old")[1]["tax"]
    assert (counts["customers_count"], counts["add_ons_count"]) == (1, 1)

    status, body = org.api.put("/taxes/old", json={"tax": {"code": "other"}})
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}
    status, body = org.api.put("/taxes/old", json={"tax": {"code": "new"}})
    assert status == 200 and body["tax"]["customers_count"] == 1
    assert [t["code"] for t in org.api.get("/customers/c")[1]["customer"]["taxes"]] == ["new"]
    add_on = org.api.get("/add_ons/setup")[1]["add_on"]
    assert [tax["code"] for tax in add_on["taxes"]] == ["new", "other"]

    assert org.api.delete("/taxes/new")[0] == 200
    assert org.api.get("/customers/c")[1]["customer"]["taxes"] == []
    assert [t["code"] for t in org.api.get("/add_ons/setup")[1]["add_on"]["taxes"]] == ["other"]
    # a new tax with the old code is not silently applied to former holders
    create_tax(org, "new")
    assert org.api.get("/customers/c")[1]["customer"]["taxes"] == []


def test_changing_a_tax_no_customer_carries_reads_no_customer(org: Any) -> None:
    """A tax's customer counter says whether any customer carries it: renaming or deleting
    one that none carries never reads the organization's customers, however many."""
    create_tax(org, "kept")
    create_tax(org, "unused")
    for external_id in ("a", "b", "c"):
        status, body = org.api.post(
            "/customers", json={"customer": {"external_id": external_id, "tax_codes": ["kept"]}}
        )
        assert status == 200, body

    with dynamodb_calls() as calls:
        assert org.api.put("/taxes/unused", json={"tax": {"code": "renamed"}})[0] == 200
        assert org.api.delete("/taxes/renamed")[0] == 200

    customer_queries = [c for c in calls.naming("CUSTOMER#") if c.operation == "Query"]
    assert customer_queries == []
    assert [t["code"] for t in org.api.get("/customers/b")[1]["customer"]["taxes"]] == ["kept"]
    assert org.api.get("/taxes/kept")[1]["tax"]["customers_count"] == 3


def test_add_on_crud_validation_and_uniqueness(org: Any) -> None:
    create_tax(org, "vat")
    add_on = {
        "name": "Setup fee",
        "invoice_display_name": "Setup",
        "code": "setup",
        "amount_cents": 5000,
        "amount_currency": "USD",
        "description": "One-time setup",
        "tax_codes": ["vat"],
    }
    status, body = org.api.post("/add_ons", json={"add_on": add_on})
    assert status == 200
    created = body["add_on"]
    assert created["amount_cents"] == 5000 and created["invoice_display_name"] == "Setup"
    assert [tax["code"] for tax in created["taxes"]] == ["vat"]
    status, body = org.api.post("/add_ons", json={"add_on": add_on})
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}

    status, body = org.api.post(
        "/add_ons",
        json={"add_on": {**add_on, "code": "x", "amount_currency": "ABC", "amount_cents": -1}},
    )
    assert status == 422 and fields(body) == {"amount_currency", "amount_cents"}
    status, body = org.api.post(
        "/add_ons", json={"add_on": {**add_on, "code": "x", "tax_codes": ["nope"]}}
    )
    assert status == 404 and body["code"] == "tax_not_found"

    status, body = org.api.put(
        "/add_ons/setup", json={"add_on": {"code": "onboarding", "description": None}}
    )
    assert status == 200 and body["add_on"]["description"] is None
    assert body["add_on"]["lago_id"] == created["lago_id"]
    assert org.api.get("/add_ons/setup")[0] == 404
    assert org.api.get("/add_ons")[1]["meta"]["total_count"] == 1
    assert org.api.delete("/add_ons/onboarding")[0] == 200
    status, body = org.api.get("/add_ons/onboarding")
    assert status == 404 and body["code"] == "add_on_not_found"


def test_an_add_on_priced_beyond_what_stripe_charges_is_refused(org: Any) -> None:
    add_on = {"name": "Big", "code": "big", "amount_currency": "EUR"}
    status, body = org.api.post("/add_ons", json={"add_on": {**add_on, "amount_cents": 10**10}})
    assert (status, body["error_details"]) == (422, {"amount_cents": ["value_is_out_of_range"]})
    assert org.api.get("/add_ons")[1]["meta"]["total_count"] == 0
    status, body = org.api.post("/add_ons", json={"add_on": {**add_on, "amount_cents": 99_999_999}})
    assert status == 200, body
    status, body = org.api.put("/add_ons/big", json={"add_on": {"amount_cents": 100_000_000}})
    assert (status, fields(body)) == (422, {"amount_cents"})
    assert org.api.get("/add_ons/big")[1]["add_on"]["amount_cents"] == 99_999_999


def test_another_organizations_catalog_is_404(org: Any, local_billow: Any) -> None:
    create_tax(org, "vat")
    other = local_billow.create_organization("Other")
    assert raw(local_billow, "GET", "/api/v1/taxes/vat", key=other.api_key)[0] == 404
    assert raw(local_billow, "DELETE", "/api/v1/taxes/vat", key=other.api_key)[0] == 404
    assert raw(local_billow, "GET", "/api/v1/taxes", key=other.api_key)[1]["taxes"] == []
    status, body = raw(
        local_billow,
        "POST",
        "/api/v1/customers",
        body=b'{"customer": {"external_id": "x", "tax_codes": ["vat"]}}',
        key=other.api_key,
    )
    assert status == 404 and body["code"] == "tax_not_found"
    assert org.api.get("/taxes/vat")[0] == 200
