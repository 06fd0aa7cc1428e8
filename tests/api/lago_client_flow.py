"""Drives Billow with Lago's official Python client; run by test_lago_client.py.

Runs in its own interpreter (``.venv/lago-client``): the client needs typeguard 4, which
cannot live next to aws-cdk-lib's jsii. Prints what it observed as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer, CustomerBillingConfiguration, WebhookEndpoint


def status_of(call: Any) -> int | None:
    try:
        call()
    except LagoApiError as error:
        return int(error.status_code)
    return None


def list_payment_methods(api_url: str, api_key: str, external_id: str) -> list[dict[str, Any]]:
    """Plain HTTP: the client's ``customer_payment_methods.find_all`` (1.55.0) sends no
    Authorization header, so any Lago-compatible server answers it 401."""
    response = httpx.get(
        f"{api_url}/api/v1/customers/{external_id}/payment_methods",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    response.raise_for_status()
    return list(response.json()["payment_methods"])


def main(api_url: str, api_key: str, stripe_customer_id: str) -> dict[str, Any]:
    client = Client(api_key=api_key, api_url=api_url, max_retries=0)
    created = client.customers.create(
        Customer(
            external_id="new",
            name="Through Lago's client",
            email="client@example.test",
            billing_configuration=CustomerBillingConfiguration(
                payment_provider="stripe", sync=True, sync_with_provider=True
            ),
        )
    )
    linked = client.customers.create(
        Customer(
            external_id="linked",
            billing_configuration=CustomerBillingConfiguration(
                payment_provider="stripe",
                provider_customer_id=stripe_customer_id,
                sync=True,
                sync_with_provider=False,
            ),
        )
    )
    listed = client.customers.find_all({"per_page": 10})
    methods = list_payment_methods(api_url, api_key, "linked")
    default = client.customer_payment_methods.set_as_default("linked", methods[0]["lago_id"])
    client.customer_payment_methods.destroy("linked", methods[0]["lago_id"])
    endpoint = client.webhook_endpoints.create(
        WebhookEndpoint(webhook_url="https://hooks.example.test/lago", signature_algo="hmac")
    )
    invalid: dict[str, Any] = {}
    try:
        client.customers.create(Customer(external_id="x", email="nope"))
    except LagoApiError as error:
        invalid = {
            "status": error.status_code,
            "details": (error.response or {}).get("error_details"),
        }
    return {
        "created": {
            "lago_id": created.lago_id,
            "provider_customer_id": created.billing_configuration.provider_customer_id,
        },
        "found": client.customers.find("new").lago_id,
        "listed": sorted(customer.external_id for customer in listed["customers"]),
        "total_count": listed["meta"]["total_count"],
        "checkout_url": client.customers.checkout_url("new"),
        "linked_provider_id": linked.billing_configuration.provider_customer_id,
        "methods": [[m["provider_method_id"], m["is_default"]] for m in methods],
        "set_as_default": default.is_default,
        "methods_after_destroy": len(list_payment_methods(api_url, api_key, "linked")),
        "endpoint_found": client.webhook_endpoints.find(endpoint.lago_id).webhook_url,
        "deleted": client.customers.destroy("new").lago_id,
        "missing_status": status_of(lambda: client.customers.find("new")),
        "invalid": invalid,
        "unauthorized_status": status_of(
            Client(api_key="wrong", api_url=api_url, max_retries=0).customers.find_all
        ),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
