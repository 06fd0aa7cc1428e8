"""Whatever a client sends, the answer is a Lago-shaped 4xx or a success, never a 500."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def assert_lago_answer(status: int, body: Any) -> None:
    assert status < 500, body
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


@EXAMPLES
@given(
    segment=st.text(min_size=1, max_size=30).filter(lambda s: "/" not in s),
    query=st.text(max_size=30),
)
def test_paths_and_queries(org: Any, local_billow: Any, segment: str, query: str) -> None:
    quoted = urllib.parse.quote(segment, safe="")
    for path in (
        f"/customers/{quoted}",
        f"/customers/{quoted}/payment_methods",
        f"/webhook_endpoints/{quoted}",
    ):
        url = f"{local_billow.api_url}/api/v1{path}?{urllib.parse.quote(query, safe='=&')}"
        assert_lago_answer(*send(url, org.api_key, "GET", b""))


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
