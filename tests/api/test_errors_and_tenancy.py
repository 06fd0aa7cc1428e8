"""Authentication, tenant isolation and Lago's error shapes for bad requests."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlsplit


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

    assert org.api.get("/customers")[1]["meta"]["total_count"] == 0


def test_list_routes_ignore_page_values_they_cannot_use(org: Any) -> None:
    """Lago answers its defaults for a page or page size it cannot use, never an error."""
    for external_id in ("a", "b", "c"):
        assert org.api.post("/customers", json={"customer": {"external_id": external_id}})[0] == 200
    for query in ("page=0", "page=-2", "page=abc", "per_page=null", "per_page=0", "per_page=x"):
        status, body = org.api.get(f"/customers?{query}")
        assert status == 200, (query, body)
        assert (body["meta"]["current_page"], len(body["customers"])) == (1, 3), query
    status, body = org.api.get("/customers?per_page=1000&page=1")
    assert status == 200 and len(body["customers"]) == 3
    status, body = org.api.get("/customers?per_page=2&page=2")
    assert (status, len(body["customers"]), body["meta"]["prev_page"]) == (200, 1, 1)
    for path in ("/plans", "/taxes", "/add_ons", "/coupons", "/webhook_endpoints", "/invoices"):
        assert org.api.get(f"{path}?page=null&per_page=null")[0] == 200, path
    status, body = org.api.get("/subscriptions?status[]=bogus&per_page=null")
    assert status == 200 and body["subscriptions"] == []


def send(
    local_billow: Any,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    key: str,
) -> tuple[int, Any]:
    """One request with exactly the given Content-Type (or none at all)."""
    connection = http.client.HTTPConnection(urlsplit(local_billow.api_url).netloc, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


FORM_PARTS = (
    b"--xyz\r\n"
    b'Content-Disposition: form-data; name="customer[external_id]"\r\n\r\n'
    b"form\r\n"
    b"--xyz--\r\n"
)
REFUSED_CONTENT_TYPES = (
    ("multipart/form-data", FORM_PARTS),
    ("multipart/form-data; boundary=xyz", FORM_PARTS),
    ("text/plain", None),
    ("application/xml", b"<customer><external_id>form</external_id></customer>"),
    ("application/x-www-form-urlencoded", b"customer%5Bexternal_id%5D=form"),
)


def test_bodies_that_are_not_json_are_refused_and_change_nothing(
    org: Any, local_billow: Any
) -> None:
    """Lago's contract takes JSON; anything else is a Lago-shaped 415 that stores nothing."""
    customer = json.dumps({"customer": {"external_id": "form"}}).encode()
    organization = json.dumps({"organization": {"email": "form@example.test"}}).encode()
    for content_type, body in REFUSED_CONTENT_TYPES:
        for method, path, sent in (
            ("POST", "/api/v1/customers", body or customer),
            ("PUT", "/api/v1/organizations", body or organization),
        ):
            status, answer = send(local_billow, method, path, sent, content_type, org.api_key)
            assert (status, answer) == (
                415,
                {
                    "status": 415,
                    "error": "Unsupported Media Type",
                    "code": "unsupported_media_type",
                    "error_details": {"content_type": ["must_be_application_json"]},
                },
            ), (content_type, method)
    assert org.api.get("/customers/form")[0] == 404
    status, updated = org.api.put("/organizations", json={"organization": {}})
    assert status == 200 and updated["organization"]["email"] is None


def test_json_bodies_are_read_whatever_their_media_type_says(org: Any, local_billow: Any) -> None:
    """As Rails reads them: any JSON media type, any charset, or no Content-Type at all."""
    for index, content_type in enumerate(
        (
            "application/json; charset=iso-8859-1",
            "Application/JSON",
            "application/vnd.api+json",
            None,
        )
    ):
        body = json.dumps({"customer": {"external_id": f"json-{index}"}}).encode()
        status, answer = send(
            local_billow, "POST", "/api/v1/customers", body, content_type, org.api_key
        )
        assert status == 200, (content_type, answer)
        body = json.dumps({"organization": {"legal_name": f"Legal {index}"}}).encode()
        status, answer = send(
            local_billow, "PUT", "/api/v1/organizations", body, content_type, org.api_key
        )
        assert (status, answer["organization"]["legal_name"]) == (200, f"Legal {index}")
    assert org.api.get("/customers")[1]["meta"]["total_count"] == 4
    status, answer = send(
        local_billow, "POST", "/api/v1/customers", b"{nope", "application/json", org.api_key
    )
    assert (status, answer["error_details"]) == (400, {"body": ["invalid_json"]})
    # Without a body the media type says nothing: a body-less action still answers.
    status, answer = send(
        local_billow,
        "POST",
        f"/api/v1/invoices/{uuid.uuid4()}/void",
        b"",
        "text/plain",
        org.api_key,
    )
    assert (status, answer["code"]) == (404, "invoice_not_found")
    status, answer = send(local_billow, "POST", "/api/v1/customers", b"", "text/plain", org.api_key)
    assert status == 400 and answer["code"] == "bad_request"


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
