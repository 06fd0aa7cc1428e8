"""Lago's official Python client, pointed at Billow, works unchanged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import StripeOrg, attach_card

ROOT = Path(__file__).resolve().parents[2]
LAGO_PYTHON = ROOT / ".venv" / "lago-client" / "bin" / "python"


def run_flow(script: str, *arguments: str) -> Any:
    """Run one of the client flows in the client's own environment; what it printed."""
    run = subprocess.run(
        [str(LAGO_PYTHON), str(Path(__file__).with_name(script)), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


pytestmark = pytest.mark.skipif(
    not LAGO_PYTHON.exists(), reason="run `make install` to create .venv/lago-client"
)


def test_lagos_python_client_drives_customers_payment_methods_and_endpoints(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    client = stripe_org.stripe
    existing = client.v1.customers.create(params={"name": "Already in Stripe"})
    card_id = attach_card(client, existing.id, default=True)

    seen = run_flow("lago_client_flow.py", local_billow.api_url, stripe_org.api_key, existing.id)

    assert seen["created"]["provider_customer_id"].startswith("cus_")
    assert seen["found"] == seen["created"]["lago_id"] == seen["deleted"]
    assert seen["listed"] == ["linked", "new"] and seen["total_count"] == 2
    assert seen["checkout_url"].startswith(local_billow.stripe_url)
    assert seen["linked_provider_id"] == existing.id
    assert seen["methods"] == [[card_id, True]]
    assert seen["set_as_default"] is True
    assert seen["methods_after_destroy"] == 0
    assert seen["endpoint_found"] == "https://hooks.example.test/lago"
    assert seen["missing_status"] == 404
    assert seen["invalid"] == {"status": 422, "details": {"email": ["invalid_format"]}}
    assert seen["unauthorized_status"] == 401


def test_lagos_python_client_drives_the_billing_cycle(
    local_billow: Any, stripe_org: StripeOrg
) -> None:
    client = stripe_org.stripe
    existing = client.v1.customers.create(params={"name": "Billed through the client"})
    attach_card(client, existing.id, default=True)

    seen = run_flow(
        "lago_client_billing_flow.py", local_billow.api_url, stripe_org.api_key, existing.id
    )

    assert seen["tax_rate"] == 20.0
    assert seen["plan"] == ["startup", 9900, ["vat_20"]]
    assert seen["subscription"] == ["active", "startup"]
    assert seen["subscription_invoice"] == [9900, 1980, 11880]  # the plan's tax applies
    assert seen["one_off"] == ["one_off", 10000, 10000]  # two units, no tax on the add-on
    assert seen["payment_statuses"] == {"subscription": "succeeded", "one_off": "succeeded"}
    assert len(seen["numbers"]) == 2 and seen["numbers"][0].endswith("-001")
    assert seen["terminated"] == "terminated"
    charges = client.v1.payment_intents.list(params={"customer": existing.id}).data
    assert sorted(intent.amount for intent in charges) == [10000, 11880]


def test_lagos_python_client_drives_usage_billing(local_billow: Any, org: Any) -> None:
    seen = run_flow("lago_client_usage_flow.py", local_billow.api_url, org.api_key)

    assert seen["event"] == "one"
    assert seen["found"] == ["one", True]
    assert seen["reused"] == "422"  # another event reusing a transaction id
    assert seen["usage"] == {
        # 3 EU calls × 0.05 + 2 other calls × 0.02; 21 GB − 5 free = 16 → 2 packs × 3
        "amount_cents": 19 + 600,
        "charges": {"api_calls": ["5", 5, 19], "storage": ["21", 1, 600]},
        "filters": [["API calls", "2", 4], ["EU calls", "3", 15]],
    }
