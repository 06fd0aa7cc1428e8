"""Listing invoices with Lago's filters, and the ``payment_overdue`` Lago computes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from billow.composition import dependencies
from billow.services import invoices as invoice_service
from tests.api.billing_helpers import create_plan
from tests.api.test_payments import create_add_on, one_off
from tests.api.test_subscriptions import subscribe


def customer(org: Any, external_id: str, **fields: Any) -> None:
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": external_id, **fields}}
    )
    assert status == 200, body


def invoices(org: Any, query: str) -> list[dict[str, Any]]:
    status, body = org.api.get(f"/invoices?{query}")
    assert status == 200, (query, body)
    return body["invoices"]  # type: ignore[no-any-return]


def lago_ids(found: list[dict[str, Any]]) -> list[str]:
    return [invoice["lago_id"] for invoice in found]


def test_invoices_are_filtered_as_lago_filters_them(org: Any) -> None:
    """Without a payment provider, invoices above zero stay pending."""
    create_add_on(org, "fee", 500)
    create_plan(org, "monthly", 1000, pay_in_advance=True)
    customer(org, "alice", name="Alice Martin", email="alice@wonder.test", currency="EUR")
    customer(org, "bob", name="Bob", firstname="Robert", currency="USD", net_payment_term=30)
    subscribe(org, "alice", "monthly", billing_time="anniversary")  # invoiced at once
    (subscription,) = invoices(org, "")
    small = one_off(org, "alice")
    voided = one_off(org, "alice")
    assert org.api.post(f"/invoices/{voided['lago_id']}/void")[0] == 200
    free = one_off(org, "alice", [{"add_on_code": "fee", "unit_amount_cents": 0}])
    dollars = one_off(org, "bob", [{"add_on_code": "fee", "unit_amount_cents": 2000}])
    assert (free["payment_status"], dollars["currency"]) == ("succeeded", "USD")
    everything = [dollars, free, voided, small, subscription]
    assert lago_ids(invoices(org, "")) == lago_ids(everything)
    issued = date.fromisoformat(small["issuing_date"])

    def check(query: str, expected: list[dict[str, Any]]) -> None:
        assert lago_ids(invoices(org, query)) == lago_ids(expected), query

    check("invoice_type=one_off", [dollars, free, voided, small])
    check("invoice_type=subscription", [subscription])
    check("invoice_type=credit", [])
    check(f"issuing_date_from={issued}&issuing_date_to={issued}", everything)
    check(f"issuing_date_from={issued + timedelta(days=1)}", [])
    check(f"issuing_date_to={issued - timedelta(days=1)}", [])
    check("currency=USD", [dollars])
    check("amount_from=600", [dollars, subscription])
    check("amount_from=600&amount_to=1500", [subscription])
    check("amount_to=0", [free])
    check("status=voided", [voided])
    check("statuses[]=finalized&payment_statuses[]=pending", [dollars, small, subscription])
    check("payment_status=succeeded", [free])
    check("self_billed=false", everything)
    check("self_billed=true", [])
    check("payment_overdue=true", [])  # nothing is due before today yet
    check("payment_overdue=false", everything)
    check("billing_entity_codes[]=default", everything)
    status, body = org.api.get("/invoices?billing_entity_codes[]=elsewhere")
    assert (status, body["code"]) == (404, "billing_entity_not_found")

    # search_term: the invoice number, the invoice id, or the customer's name, first name,
    # external id or e-mail, in any case.
    check("search_term=MARTIN", [free, voided, small, subscription])
    check("search_term=robert", [dollars])
    check("search_term=Wonder.Test", [free, voided, small, subscription])
    check("search_term=bob", [dollars])
    check(f"search_term={small['number']}", [small])
    check(f"search_term={small['lago_id']}", [small])
    check("search_term=nobody", [])
    # Naming a customer searches only the invoices' own fields (Lago does the same).
    check("external_customer_id=bob&search_term=robert", [])
    check(f"external_customer_id=alice&search_term={small['number']}", [small])

    # The customer's own route takes the same filters.
    status, body = org.api.get("/customers/alice/invoices?invoice_type=subscription")
    assert status == 200 and lago_ids(body["invoices"]) == lago_ids([subscription])

    # What Lago cannot use it ignores; an unknown customer is an empty list, not a 404.
    for query in (
        "invoice_type=bogus",
        "status=unknown",
        "statuses[]=paid",
        "payment_overdue=maybe",
        "issuing_date_from=yesterday",
        "amount_from=lots",
        "per_page=null&page=none",
    ):
        check(query, everything)
    status, body = org.api.get("/invoices?external_customer_id=nobody")
    assert (status, body["invoices"], body["meta"]["total_count"]) == (200, [], 0)


def test_an_unpaid_invoice_past_its_due_date_is_overdue(org: Any) -> None:
    """A week on, alice's pending invoices (due the day they were issued) are overdue; bob's
    (30 days to pay), a paid one and a voided one are not. The use case takes "today" as an
    argument, so the test moves it instead of waiting a week."""
    create_add_on(org, "fee", 500)
    customer(org, "alice", currency="EUR")
    customer(org, "bob", currency="EUR", net_payment_term=30)
    late = one_off(org, "alice")
    voided = one_off(org, "alice")
    assert org.api.post(f"/invoices/{voided['lago_id']}/void")[0] == 200
    one_off(org, "alice", [{"add_on_code": "fee", "unit_amount_cents": 0}])
    one_off(org, "bob")
    assert late["payment_overdue"] is False

    deps = dependencies()
    week_later = date.fromisoformat(late["issuing_date"]) + timedelta(days=7)
    overdue_filter = invoice_service.InvoiceFilters(payment_overdue=True)
    found, _ = invoice_service.list_page(deps, org.id, overdue_filter, week_later, 1, 100)
    shown = invoice_service.present_all(deps, found, week_later)
    assert [(i["lago_id"], i["payment_overdue"]) for i in shown] == [(late["lago_id"], True)]
    everything, _ = invoice_service.list_page(
        deps, org.id, invoice_service.InvoiceFilters(), week_later, 1, 100
    )
    assert (
        sum(i["payment_overdue"] for i in invoice_service.present_all(deps, everything, week_later))
        == 1
    )
