"""Whatever a client sends, the answer is a Lago-shaped 4xx or a success, never a 500."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import StripeOrg
from tests.api.test_stripe_webhooks import deliver, signed, webhook_secret

CUSTOMER_FIELDS = [
    "external_id",
    "name",
    "email",
    "country",
    "currency",
    "timezone",
    "net_payment_term",
    "account_type",
    "customer_type",
    "metadata",
    "shipping_address",
    "billing_entity_code",
    "billing_configuration",
    "finalize_zero_amount_invoice",
    "phone",
    "url",
]
BILLING_FIELDS = [
    "payment_provider",
    "payment_provider_code",
    "provider_customer_id",
    "sync",
    "sync_with_provider",
    "provider_payment_methods",
    "invoice_grace_period",
    "document_locale",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def objects(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(fields) | st.text(max_size=12), json_values, max_size=6)


customer_bodies = st.fixed_dictionaries(
    {"customer": objects(CUSTOMER_FIELDS).map(lambda c: c) | json_values}
) | st.builds(
    lambda customer, billing: {"customer": {**customer, "billing_configuration": billing}},
    objects(CUSTOMER_FIELDS),
    objects(BILLING_FIELDS) | json_values,
)
endpoint_bodies = st.fixed_dictionaries(
    {
        "webhook_endpoint": objects(["webhook_url", "signature_algo", "name", "event_types"])
        | json_values
    }
)
integration_bodies = st.fixed_dictionaries(
    {
        "integration": objects(
            ["secret_key", "code", "name", "create_customers", "success_redirect_url"]
        )
        | json_values
    }
)
organization_bodies = st.fixed_dictionaries(
    {
        "organization": objects(
            [
                *("email", "country", "default_currency", "net_payment_term", "webhook_url"),
                *("email_settings", "timezone", "document_numbering", "billing_configuration"),
            ]
        )
        | json_values
    }
)
raw_bodies = st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode())


def send(url: str, key: str, method: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


GATEWAY_REFUSAL = {"message": "Bad Request"}
"""API Gateway's own answer to a path it cannot decode twice (``%25`` then one hex digit):
Billow never sees such a request."""


def assert_lago_answer(status: int, body: Any) -> None:
    assert status < 500, body
    if (status, body) == (400, GATEWAY_REFUSAL):
        return
    if status >= 400:
        assert body["status"] == status and body["error"], body


EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@EXAMPLES
@given(body=customer_bodies | raw_bodies)
def test_customer_bodies(org: Any, local_billow: Any, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert_lago_answer(*send(f"{local_billow.api_url}/api/v1/customers", org.api_key, "POST", raw))


@EXAMPLES
@given(body=endpoint_bodies | raw_bodies)
def test_webhook_endpoint_bodies(org: Any, local_billow: Any, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"{local_billow.api_url}/api/v1/webhook_endpoints"
    assert_lago_answer(*send(url, org.api_key, "POST", raw))


@EXAMPLES
@given(body=integration_bodies | raw_bodies)
def test_integration_bodies(org: Any, local_billow: Any, body: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"{local_billow.api_url}/api/v1/integrations/stripe"
    assert_lago_answer(*send(url, org.api_key, "POST", raw))


odd_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(list("/?#%\\.+&=;\"' \x00\x7f\x85")),
    min_size=1,
    max_size=30,
)
"""Ids as a client might send them: any text, rich in what URLs treat specially."""
segments = odd_text | st.text(st.sampled_from("€😀a"), min_size=200, max_size=400)
"""...and ids too long to be a DynamoDB key (up to 1,600 bytes)."""

ID_PATHS = [
    ("GET", "/customers/{id}"),
    ("DELETE", "/customers/{id}"),
    ("POST", "/customers/{id}/checkout_url"),
    ("GET", "/customers/{id}/payment_methods"),
    ("PUT", "/customers/cust/payment_methods/{id}/set_as_default"),
    ("DELETE", "/customers/cust/payment_methods/{id}"),
    ("GET", "/customers/{id}/applied_coupons"),
    ("DELETE", "/customers/cust/applied_coupons/{id}"),
    ("DELETE", "/customers/{id}/applied_coupons/x"),
    ("GET", "/customers/{id}/invoices"),
    ("GET", "/customers/{id}/subscriptions"),
    ("GET", "/subscriptions/{id}"),
    ("DELETE", "/subscriptions/{id}"),
    ("GET", "/invoices/{id}"),
    ("POST", "/invoices/{id}/void"),
    ("POST", "/invoices/{id}/retry_payment"),
    ("POST", "/invoices/{id}/payment_url"),
    ("GET", "/webhook_endpoints/{id}"),
    ("DELETE", "/integrations/stripe/{id}"),
]
"""Every route naming an object by a path parameter, outside the catalog's (see
test_catalog_inputs); ``cust`` is a customer that exists."""


@EXAMPLES
@given(
    segment=segments,
    query=st.text(max_size=30),
    routes=st.lists(st.sampled_from(ID_PATHS), min_size=1, max_size=4, unique=True),
)
def test_paths_and_queries(
    org: Any, local_billow: Any, segment: str, query: str, routes: list[tuple[str, str]]
) -> None:
    if org.api.get("/customers/cust")[0] == 404:
        org.api.post("/customers", json={"customer": {"external_id": "cust"}})
    quoted = urllib.parse.quote(segment, safe="")
    for method, path in routes:
        url = (
            f"{local_billow.api_url}/api/v1{path.format(id=quoted)}"
            f"?{urllib.parse.quote(query, safe='=&')}"
        )
        assert_lago_answer(*send(url, org.api_key, method, b""))


def test_ids_too_long_to_be_a_key_name_nothing(org: Any, local_billow: Any) -> None:
    """DynamoDB refuses a key over 1 KB outright (local mode's moto too): such an id,
    in a path or in a body, names nothing, like any unknown id, and is never a 500."""
    quoted = urllib.parse.quote("é" * 600, safe="")
    long = "😀" * 255  # as long as a body's ids may be: 1,020 bytes, more with a key's prefix
    org.api.post("/customers", json={"customer": {"external_id": "cust", "currency": "EUR"}})
    for method, path in ID_PATHS:
        url = f"{local_billow.api_url}/api/v1{path.format(id=quoted)}"
        status, body = send(url, org.api_key, method, b"")
        assert status in (200, 404), (method, path, body)  # 200: an empty list
    for resource in ("taxes", "plans", "add_ons", "coupons"):
        assert org.api.get(f"/{resource}/{quoted}")[0] == 404
        assert org.api.delete(f"/{resource}/{quoted}")[0] == 404
    for path, body in (
        ("/subscriptions", {"subscription": {"external_customer_id": long, "plan_code": "p"}}),
        ("/subscriptions", {"subscription": {"external_customer_id": "cust", "plan_code": long}}),
        (
            "/applied_coupons",
            {"applied_coupon": {"external_customer_id": "cust", "coupon_code": long}},
        ),
        ("/invoices", {"invoice": {"external_customer_id": long, "fees": [{"add_on_code": "a"}]}}),
        (
            "/invoices",
            {"invoice": {"external_customer_id": "cust", "fees": [{"add_on_code": long}]}},
        ),
    ):
        status, answer = org.api.post(path, json=body)
        assert status in (404, 422), (path, answer)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [33, 1_000, 500_000])
def test_deeply_nested_bodies_are_a_bad_request_and_create_nothing(
    org: Any, local_billow: Any, depth: int
) -> None:
    """A thousand nested arrays used to be a RecursionError, a 500; now a Lago 400."""
    body = b'{"customer": {"external_id": "deep", "metadata": ' + nested(depth) + b"}}"
    status, answer = send(f"{local_billow.api_url}/api/v1/customers", org.api_key, "POST", body)
    assert (status, answer) == (
        400,
        {
            "status": 400,
            "error": "Bad Request",
            "code": "bad_request",
            "error_details": {"body": ["too_deeply_nested"]},
        },
    )
    assert org.api.get("/customers")[1]["customers"] == []


def test_nesting_up_to_the_bound_is_read_as_usual(org: Any, local_billow: Any) -> None:
    """32 levels (the request's own two included) reach validation: Lago's 422."""
    body = b'{"customer": {"external_id": "deep", "metadata": ' + nested(30) + b"}}"
    status, answer = send(f"{local_billow.api_url}/api/v1/customers", org.api_key, "POST", body)
    assert status == 422 and "metadata.0" in answer["error_details"], answer
    status, answer = send(
        f"{local_billow.api_url}/api/v1/customers",
        org.api_key,
        "POST",
        b'{"customer": {"external_id": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}}',
    )
    assert status == 200 and answer["customer"]["external_id"].startswith("[[[")


def test_a_deeply_nested_stripe_delivery_is_refused_unread(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    """Even correctly signed (only Stripe and Billow know the secret), a delivery nested a
    thousand deep is a 400 that stores nothing, not a 500 Stripe would retry for days."""
    body = (
        b'{"id": "evt_deep", "object": "event", "type": "customer.updated", '
        b'"data": {"object": ' + nested(1_000) + b"}}"
    )
    secret = webhook_secret(local_billow, stripe_org.id)
    status, answer = deliver(local_billow, stripe_org.id, body, signed(body, secret))
    assert (status, answer["code"]) == (400, "invalid_webhook")
    table = boto3.resource("dynamodb", endpoint_url=local_billow.aws_url, region_name="us-east-1")
    key = {"PK": f"ORG#{stripe_org.id}", "SK": "STRIPE_EVENT#evt_deep"}
    assert "Item" not in table.Table("billow").get_item(Key=key, ConsistentRead=True)


media_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-16",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=abc",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
        "",
        ";",
    ]
) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@EXAMPLES
@given(
    content_type=media_types,
    body=raw_bodies | organization_bodies,
    method_path=st.sampled_from(
        [("POST", "/customers"), ("PUT", "/organizations"), ("POST", "/invoices")]
    ),
)
def test_any_content_type(
    org: Any, local_billow: Any, content_type: str, body: Any, method_path: tuple[str, str]
) -> None:
    method, path = method_path
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{local_billow.api_url}/api/v1{path}",
        data=raw,
        method=method,
        headers={"Authorization": f"Bearer {org.api_key}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request) as response:
            status, answer = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, answer = error.code, json.loads(error.read())
    assert_lago_answer(status, answer)


list_queries = st.dictionaries(
    st.sampled_from(
        [
            "page",
            "per_page",
            "status",
            "statuses[]",
            "status[]",
            "payment_status",
            "payment_statuses[]",
            "invoice_type",
            "issuing_date_from",
            "issuing_date_to",
            "payment_overdue",
            "currency",
            "search_term",
            "amount_from",
            "amount_to",
            "self_billed",
            "external_customer_id",
            "coupon_code[]",
        ]
    ),
    st.sampled_from(["null", "", "-1", "0", "true", "2024-02-30", "finalized", "%", "[]"])
    | st.text(max_size=12),
    max_size=5,
)


@EXAMPLES
@given(
    query=list_queries,
    path=st.sampled_from(
        ["/invoices", "/subscriptions", "/applied_coupons", "/customers", "/plans"]
    ),
)
def test_list_queries(org: Any, local_billow: Any, query: dict[str, str], path: str) -> None:
    """Lago ignores what it cannot use in a list's query: the answer is a page."""
    url = f"{local_billow.api_url}/api/v1{path}?{urllib.parse.urlencode(query)}"
    status, body = send(url, org.api_key, "GET", b"")
    assert status == 200, (query, body)
    assert "meta" in body
