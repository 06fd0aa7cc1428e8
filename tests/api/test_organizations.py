"""Lago's organization settings: PUT /api/v1/organizations stores and shows them."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from tests.api.test_payments import create_add_on, one_off

PROFILE = {
    "email": "billing@acme.test",
    "legal_name": "Acme SAS",
    "legal_number": "123 456 789",
    "tax_identification_number": "FR12345678901",
    "address_line1": "1 rue de la Paix",
    "address_line2": "Bât. B",
    "city": "Paris",
    "state": "IDF",
    "zipcode": "75002",
    "country": "fr",
    "default_currency": "EUR",
    "net_payment_term": 30,
    "email_settings": ["invoice.finalized", "credit_note.created"],
    "document_numbering": "per_organization",
    "finalize_zero_amount_invoice": True,
}


def organization(org: Any, **fields: Any) -> tuple[int, Any]:
    return org.api.put("/organizations", json={"organization": fields})  # type: ignore[no-any-return]


def test_the_organizations_settings_are_stored_and_returned(org: Any) -> None:
    status, body = organization(
        org,
        **PROFILE,
        timezone="Europe/Paris",
        billing_configuration={"invoice_footer": "Thank you", "document_locale": "fr"},
    )
    assert status == 200, body
    shown = body["organization"]
    assert {name: shown[name] for name in PROFILE} == {**PROFILE, "country": "FR"}
    assert shown["billing_configuration"] == {
        "invoice_footer": "Thank you",
        "invoice_grace_period": 0,
        "document_locale": "fr",
        "payment_retry_delays_days": [3, 5, 7],
    }
    assert (shown["lago_id"], shown["name"], shown["timezone"]) == (
        org.id,
        org.name,
        "Europe/Paris",
    )
    assert (shown["webhook_url"], shown["webhook_urls"], shown["taxes"]) == (None, [], [])

    # Another update keeps what it does not name; null clears an optional field.
    status, body = organization(org, city="Lyon", address_line2=None, net_payment_term=None)
    assert status == 200, body
    again = body["organization"]
    assert (again["city"], again["address_line2"], again["email"]) == (
        "Lyon",
        None,
        "billing@acme.test",
    )
    assert again["net_payment_term"] == 30


def test_invalid_settings_are_refused_and_change_nothing(org: Any) -> None:
    assert organization(org, email="first@acme.test", country="DE")[0] == 200
    cases: list[tuple[dict[str, Any], dict[str, list[str]]]] = [
        ({"email": "not-an-address"}, {"email": ["invalid_email_format"]}),
        ({"country": "ZZ"}, {"country": ["not_a_valid_country_code"]}),
        ({"default_currency": "XYZ"}, {"default_currency": ["value_is_invalid"]}),
        ({"net_payment_term": -1}, {"net_payment_term": ["value_is_out_of_range"]}),
        ({"net_payment_term": 366}, {"net_payment_term": ["value_is_out_of_range"]}),
        ({"webhook_url": "not a url"}, {"webhook_url": ["value_is_invalid"]}),
        ({"webhook_url": None}, {"webhook_url": ["value_is_mandatory"]}),
        ({"email_settings": ["invoice.paid"]}, {"email_settings": ["unsupported_value"]}),
        ({"timezone": "Mars/Olympus"}, {"timezone": ["invalid_timezone"]}),
        ({"document_numbering": "per_customer"}, {"document_numbering": ["not_supported"]}),
        (
            {"finalize_zero_amount_invoice": False},
            {"finalize_zero_amount_invoice": ["not_supported"]},
        ),
        (
            {"billing_configuration": {"invoice_grace_period": 3}},
            {"invoice_grace_period": ["not_supported"]},
        ),
        (
            {"billing_configuration": {"invoice_footer": "x" * 601}},
            {"billing_configuration.invoice_footer": ["value_is_too_long"]},
        ),
    ]
    for fields, details in cases:
        status, body = organization(org, city="Never", **fields)
        assert (status, body["code"], body["error_details"]) == (
            422,
            "validation_errors",
            details,
        ), fields
    shown = organization(org)[1]["organization"]
    assert (shown["email"], shown["country"], shown["city"]) == ("first@acme.test", "DE", None)
    assert org.api.get("/webhook_endpoints")[1]["webhook_endpoints"] == []


def test_webhook_url_is_the_first_webhook_endpoint(org: Any) -> None:
    status, body = organization(org, webhook_url="https://hooks.acme.test/first")
    assert status == 200, body
    (created,) = org.api.get("/webhook_endpoints")[1]["webhook_endpoints"]
    assert created["webhook_url"] == "https://hooks.acme.test/first"
    assert body["organization"]["webhook_urls"] == ["https://hooks.acme.test/first"]

    second = {"webhook_endpoint": {"webhook_url": "https://hooks.acme.test/second"}}
    assert org.api.post("/webhook_endpoints", json=second)[0] == 200
    shown = organization(org)[1]["organization"]
    assert shown["webhook_url"] == "https://hooks.acme.test/first"
    assert shown["webhook_urls"] == [
        "https://hooks.acme.test/first",
        "https://hooks.acme.test/second",
    ]

    # The first endpoint moves; another endpoint's URL is refused, as /webhook_endpoints does.
    status, body = organization(org, webhook_url="https://hooks.acme.test/moved", city="Nice")
    assert status == 200 and body["organization"]["webhook_urls"] == [
        "https://hooks.acme.test/moved",
        "https://hooks.acme.test/second",
    ]
    moved = org.api.get(f"/webhook_endpoints/{created['lago_id']}")[1]["webhook_endpoint"]
    assert moved["webhook_url"] == "https://hooks.acme.test/moved"
    status, body = organization(org, webhook_url="https://hooks.acme.test/second", city="Caen")
    assert (status, body["error_details"]) == (422, {"webhook_url": ["value_already_exist"]})
    assert organization(org)[1]["organization"]["city"] == "Nice"


def test_the_organizations_payment_term_applies_to_customers_without_one(org: Any) -> None:
    create_add_on(org, "fee", 1500)
    for external_id, term in (("inherits", None), ("own-term", 5), ("zero", 0)):
        customer = {"external_id": external_id, "currency": "EUR", "net_payment_term": term}
        assert org.api.post("/customers", json={"customer": customer})[0] == 200
    assert organization(org, net_payment_term=45)[0] == 200

    for external_id, days in (("inherits", 45), ("own-term", 5), ("zero", 0)):
        invoice = one_off(org, external_id)
        issued = date.fromisoformat(invoice["issuing_date"])
        assert invoice["net_payment_term"] == days, external_id
        assert invoice["payment_due_date"] == (issued + timedelta(days=days)).isoformat()
