"""Authentication, tenant isolation and Lago's error shapes for bad requests."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from typing import Any


def raw(
    local_billow: Any, method: str, path: str, body: bytes | None = None, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{local_billow.api_url}{path}", data=body, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_missing_or_wrong_key_is_401(local_billow: Any) -> None:
    assert raw(local_billow, "GET", "/api/v1/customers") == (
        401,
        {"status": 401, "error": "Unauthorized"},
    )
    assert raw(local_billow, "GET", "/api/v1/customers", key="nope")[0] == 401
    status, _ = raw(local_billow, "POST", "/api/v1/customers", body=b"{not json", key="nope")
    assert status == 401


def test_another_organizations_objects_are_404(org: Any, local_billow: Any) -> None:
    assert org.api.post("/customers", json={"customer": {"external_id": "mine"}})[0] == 200
    other = local_billow.create_organization("Other")
    status, body = raw(local_billow, "GET", "/api/v1/customers/mine", key=other.api_key)
    assert status == 404 and body == {
        "status": 404,
        "error": "Not Found",
        "code": "customer_not_found",
    }
    assert raw(local_billow, "DELETE", "/api/v1/customers/mine", key=other.api_key)[0] == 404
    status, body = raw(local_billow, "GET", "/api/v1/customers", key=other.api_key)
    assert body["customers"] == []
    assert org.api.get("/customers/mine")[0] == 200


def test_unknown_route_malformed_and_oversized_bodies(org: Any, local_billow: Any) -> None:
    status, body = org.api.get("/nothing_here")
    assert status == 404 and body["code"] == "route_not_found"
    status, body = raw(local_billow, "GET", "/not-even-api")
    assert status == 404 and body["code"] == "route_not_found"

    status, body = raw(
        local_billow, "POST", "/api/v1/customers", body=b"{not json", key=org.api_key
    )
    assert status == 400 and body["status"] == 400 and body["code"] == "bad_request"
    status, body = raw(local_billow, "POST", "/api/v1/customers", body=b"{}", key=org.api_key)
    assert status == 400 and body["error_details"] == {"customer": ["value_is_mandatory"]}
    status, body = raw(
        local_billow, "POST", "/api/v1/customers", body=b'{"customer": "x"}', key=org.api_key
    )
    assert status == 400

    status, body = raw(local_billow, "POST", "/api/v1/customers", body=b"\x80", key=org.api_key)
    assert status == 400 and body["error_details"] == {"body": ["invalid_utf8"]}

    huge = json.dumps({"customer": {"external_id": "big", "name": "x" * 2_000_000}}).encode()
    status, body = raw(local_billow, "POST", "/api/v1/customers", body=huge, key=org.api_key)
    assert status == 413 and body["code"] == "payload_too_large"

    status, body = org.api.get("/customers?page=0")
    assert status == 422 and "page" in body["error_details"]
    status, body = org.api.get("/customers?per_page=abc")
    assert status == 422 and "per_page" in body["error_details"]
    assert org.api.get("/customers")[1]["meta"]["total_count"] == 0


def test_concurrent_requests_of_two_organizations_never_cross(local_billow: Any) -> None:
    """The local gateway serves requests on many threads; each answer must be the caller's."""
    organizations = [local_billow.create_organization(f"Parallel {n}") for n in range(2)]
    for index, organization in enumerate(organizations):
        body = json.dumps({"customer": {"external_id": f"only-{index}"}}).encode()
        assert raw(local_billow, "POST", "/api/v1/customers", body, organization.api_key)[0] == 200
    crossed: list[Any] = []

    def read(index: int) -> None:
        for _ in range(15):
            status, body = raw(
                local_billow, "GET", "/api/v1/customers", key=organizations[index].api_key
            )
            seen = [c["external_id"] for c in body.get("customers", [])]
            if status != 200 or seen != [f"only-{index}"]:
                crossed.append((index, status, seen))

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, as a busy machine would
    try:
        threads = [threading.Thread(target=read, args=(n % 2,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert crossed == []
