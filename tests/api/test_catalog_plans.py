"""Plans through the Lago API: CRUD, validation, codes freed on delete, webhooks."""

from __future__ import annotations

from typing import Any

from tests.api.test_catalog_taxes import create_tax, fields
from tests.api.test_customers import webhooks
from tests.api.test_errors_and_tenancy import raw

PLAN = {
    "name": "Startup",
    "invoice_display_name": "Startup plan",
    "code": "startup",
    "interval": "monthly",
    "description": "For small teams",
    "amount_cents": 9900,
    "amount_currency": "EUR",
    "trial_period": 14,
    "pay_in_advance": True,
}


def create_plan(org: Any, **changes: Any) -> dict[str, Any]:
    status, body = org.api.post("/plans", json={"plan": {**PLAN, **changes}})
    assert status == 200, body
    return body["plan"]  # type: ignore[no-any-return]


def test_plan_crud_is_lago_shaped(org: Any) -> None:
    create_tax(org, "vat", "20")
    plan = create_plan(org, tax_codes=["vat"], charges=[], minimum_commitment=None)
    assert plan["code"] == "startup" and plan["interval"] == "monthly"
    assert plan["amount_cents"] == 9900 and plan["amount_currency"] == "EUR"
    assert plan["trial_period"] == 14 and plan["pay_in_advance"] is True
    assert plan["charges"] == [] and plan["bill_charges_monthly"] is None
    assert plan["active_subscriptions_count"] == 0 and plan["draft_invoices_count"] == 0
    assert [tax["code"] for tax in plan["taxes"]] == ["vat"]
    assert org.api.get("/plans/startup")[1]["plan"] == plan

    status, body = org.api.put(
        "/plans/startup",
        json={"plan": {"amount_cents": 12900, "description": None, "tax_codes": []}},
    )
    assert status == 200
    updated = body["plan"]
    assert updated["amount_cents"] == 12900 and updated["description"] is None
    assert updated["name"] == "Startup" and updated["taxes"] == []

    create_plan(org, code="scale", interval="yearly")
    listed = org.api.get("/plans")[1]
    assert listed["meta"]["total_count"] == 2
    assert {plan["code"] for plan in listed["plans"]} == {"startup", "scale"}
    assert org.api.get("/taxes/vat")[1]["tax"]["plans_count"] == 0


def test_plan_validation_changes_nothing(org: Any) -> None:
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"interval": "semiannual"}, {"interval"}),
        ({"interval": "daily"}, {"interval"}),
        ({"amount_currency": "EURO"}, {"amount_currency"}),
        ({"amount_currency": "eur"}, {"amount_currency"}),
        ({"amount_cents": -1}, {"amount_cents"}),
        ({"amount_cents": "100"}, {"amount_cents"}),
        ({"trial_period": -1}, {"trial_period"}),
        ({"pay_in_advance": "yes"}, {"pay_in_advance"}),
        ({"name": "   "}, {"name"}),
        ({"code": ""}, {"code"}),
        (
            {"charges": [{"billable_metric_id": "x", "charge_model": "median"}]},
            {"charges.0.charge_model"},
        ),
        ({"fixed_charges": [{"add_on_id": "x"}]}, {"fixed_charges"}),
        ({"usage_thresholds": [{"amount_cents": 0}]}, {"usage_thresholds.0.amount_cents"}),
        ({"minimum_commitment": {"amount_cents": 1}}, {"minimum_commitment"}),
    ]
    for changes, named in cases:
        status, body = org.api.post("/plans", json={"plan": {**PLAN, **changes}})
        assert status == 422 and fields(body) == named, (changes, body)
    status, body = org.api.post("/plans", json={"plan": {"name": "No code"}})
    assert status == 422
    assert fields(body) == {"code", "interval", "amount_cents", "amount_currency"}
    status, body = org.api.post("/plans", json={"plan": {**PLAN, "tax_codes": ["nope"]}})
    assert status == 404 and body["code"] == "tax_not_found"
    assert org.api.get("/plans")[1]["meta"]["total_count"] == 0

    create_plan(org)
    status, body = org.api.post("/plans", json={"plan": PLAN})
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}
    status, body = org.api.put("/plans/startup", json={"plan": {"interval": "hourly"}})
    assert status == 422 and fields(body) == {"interval"}
    assert org.api.get("/plans/startup")[1]["plan"]["interval"] == "monthly"
    status, body = org.api.put("/plans/missing", json={"plan": {"name": "x"}})
    assert status == 404 and body["code"] == "plan_not_found"


def test_a_price_stripe_could_not_charge_is_refused(org: Any) -> None:
    """Every subscription invoice of such a plan would fail its charge and every retry."""
    for amount in (100_000_000, 10**18):
        status, body = org.api.post("/plans", json={"plan": {**PLAN, "amount_cents": amount}})
        assert (status, body["error_details"]) == (
            422,
            {"amount_cents": ["value_is_out_of_range"]},
        ), body
    assert org.api.get("/plans")[1]["meta"]["total_count"] == 0

    assert create_plan(org, amount_cents=99_999_999)["amount_cents"] == 99_999_999
    status, body = org.api.put("/plans/startup", json={"plan": {"amount_cents": 100_000_000}})
    assert (status, fields(body)) == (422, {"amount_cents"})
    assert org.api.get("/plans/startup")[1]["plan"]["amount_cents"] == 99_999_999


def test_deleted_plan_frees_its_code(org: Any) -> None:
    first = create_plan(org)
    status, body = org.api.delete("/plans/startup")
    assert status == 200 and body["plan"]["lago_id"] == first["lago_id"]
    assert org.api.get("/plans/startup")[0] == 404
    assert org.api.delete("/plans/startup")[0] == 404
    assert org.api.get("/plans")[1]["plans"] == []

    second = create_plan(org, amount_cents=100)
    assert second["lago_id"] != first["lago_id"]
    assert org.api.get("/plans/startup")[1]["plan"]["amount_cents"] == 100


def test_renamed_plan_takes_its_code_along(org: Any) -> None:
    create_plan(org)
    create_plan(org, code="taken")
    status, body = org.api.put("/plans/startup", json={"plan": {"code": "taken"}})
    assert status == 422 and body["error_details"] == {"code": ["value_already_exist"]}
    status, body = org.api.put("/plans/startup", json={"plan": {"code": "growth"}})
    assert status == 200 and body["plan"]["code"] == "growth"
    assert org.api.get("/plans/startup")[0] == 404
    assert org.api.get("/plans/growth")[0] == 200
    create_plan(org)  # the old code is free again


def test_plan_webhooks(org: Any, subscribed: Any, wait_for: Any) -> None:
    plan = create_plan(org)
    org.api.put("/plans/startup", json={"plan": {"name": "Startup v2"}})
    org.api.delete("/plans/startup")
    wait_for(lambda: webhooks(subscribed, "plan.deleted"))
    created = webhooks(subscribed, "plan.created")[0]
    assert created["object_type"] == "plan" and created["organization_id"] == org.id
    assert created["plan"]["lago_id"] == plan["lago_id"]
    assert webhooks(subscribed, "plan.updated")[0]["plan"]["name"] == "Startup v2"
    assert webhooks(subscribed, "plan.deleted")[0]["plan"]["code"] == "startup"


def test_refused_plan_changes_send_no_webhook(org: Any, subscribed: Any, local_billow: Any) -> None:
    create_plan(org)
    org.api.post("/plans", json={"plan": PLAN})
    org.api.put("/plans/startup", json={"plan": {"interval": "nope"}})
    local_billow.wait_idle()
    kinds = [request.json()["webhook_type"] for request in subscribed.requests]
    assert kinds == ["plan.created"]


def test_another_organizations_plan_is_404(org: Any, local_billow: Any) -> None:
    create_plan(org)
    other = local_billow.create_organization("Other")
    for method in ("GET", "DELETE"):
        status, body = raw(local_billow, method, "/api/v1/plans/startup", key=other.api_key)
        assert status == 404 and body["code"] == "plan_not_found"
    status, _ = raw(
        local_billow,
        "PUT",
        "/api/v1/plans/startup",
        body=b'{"plan": {"name": "mine now"}}',
        key=other.api_key,
    )
    assert status == 404
    assert raw(local_billow, "GET", "/api/v1/plans", key=other.api_key)[1]["plans"] == []
    # the code is free in the other organization
    status, _ = raw(
        local_billow,
        "POST",
        "/api/v1/plans",
        body=b'{"plan": {"name": "S", "code": "startup", "interval": "weekly",'
        b' "amount_cents": 1, "amount_currency": "USD"}}',
        key=other.api_key,
    )
    assert status == 200
    assert org.api.get("/plans/startup")[1]["plan"]["name"] == "Startup"
