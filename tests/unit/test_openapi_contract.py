"""The check the test client runs on every response reports each way a response can
differ from ``docs/openapi.json``, and accepts what the document describes."""

from __future__ import annotations

import json

import pytest

from billow.api.app import openapi_document
from tests.openapi_contract import ResponseContract

BASE = "http://127.0.0.1:1/api/v1"
EMPTY_PAGE = {
    "customers": [],
    "meta": {
        "current_page": 1,
        "next_page": None,
        "prev_page": None,
        "total_pages": 0,
        "total_count": 0,
    },
}


@pytest.fixture(scope="module")
def contract() -> ResponseContract:
    return ResponseContract(json.loads(openapi_document()))


def test_a_documented_response_passes(contract: ResponseContract) -> None:
    assert contract.problems("GET", f"{BASE}/customers?page=2", 200, EMPTY_PAGE) == []
    error = {"status": 404, "error": "Not Found", "code": "customer_not_found"}
    assert contract.problems("GET", f"{BASE}/customers/c%201", 404, error) == []


def test_a_body_unlike_its_schema_is_reported(contract: ResponseContract) -> None:
    extra = {**EMPTY_PAGE, "links": {}}
    assert any(
        "links" in problem for problem in contract.problems("GET", f"{BASE}/customers", 200, extra)
    )
    missing = {"customers": []}
    assert any(
        "meta" in problem for problem in contract.problems("GET", f"{BASE}/customers", 200, missing)
    )
    wrong_type = {**EMPTY_PAGE, "meta": {**EMPTY_PAGE["meta"], "total_count": "0"}}
    assert contract.problems("GET", f"{BASE}/customers", 200, wrong_type)


def test_an_error_not_in_lagos_shape_is_reported(contract: ResponseContract) -> None:
    assert contract.problems("POST", f"{BASE}/customers", 422, {"detail": []})


def test_a_status_the_document_does_not_list_is_reported(contract: ResponseContract) -> None:
    (problem,) = contract.problems("POST", f"{BASE}/customers", 201, {})
    assert "status not in the document" in problem
    (problem,) = contract.problems(
        "GET", f"{BASE}/customers/c-1", 405, {"status": 405, "error": "x"}
    )
    assert "status not in the document" in problem


def test_a_route_missing_from_the_document_is_reported(contract: ResponseContract) -> None:
    (problem,) = contract.problems("GET", f"{BASE}/wallets", 200, {"wallets": []})
    assert "no such route" in problem
    (problem,) = contract.problems("PATCH", f"{BASE}/customers", 200, EMPTY_PAGE)
    assert "no such route" in problem
    not_found = {"status": 404, "error": "Not Found", "code": "route_not_found"}
    assert contract.problems("GET", f"{BASE}/wallets", 404, not_found) == []


def test_literal_segments_win_over_parameters(contract: ResponseContract) -> None:
    assert contract.route("GET", "/api/v1/integrations/stripe") == "/api/v1/integrations/stripe"
    assert contract.route("GET", "/api/v1/customers/a/invoices") == (
        "/api/v1/customers/{external_customer_id}/invoices"
    )
