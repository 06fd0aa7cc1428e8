"""Lago's official JavaScript client (``lago-javascript-client`` 1.53), pointed at Billow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_lago_contract import CONTRACT, check
from tests.conftest import Org

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".venv" / "lago-js-client" / "node_modules"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (NODE_MODULES / "lago-javascript-client").exists(),
    reason="needs Node.js and `make install` (which installs .venv/lago-js-client)",
)


def run_flow(api_url: str, api_key: str) -> dict[str, Any]:
    assert NODE is not None
    run = subprocess.run(
        [NODE, str(Path(__file__).with_name("lago_js_client_flow.cjs")), api_url, api_key],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def test_lagos_javascript_client_drives_customers_catalog_invoices_and_settings(
    local_billow: Any, org: Org
) -> None:
    seen = run_flow(local_billow.api_url, org.api_key)

    assert seen["customer"] == "js-1" and seen["customers"] == ["js-1"]
    assert seen["sync_with_provider"] is False
    assert seen["plan"] == 1500
    assert seen["one_off"] == ["one_off", 1400, "pending"]
    assert seen["free"] == "succeeded"

    one_off, free = seen["ids"]["one_off"], seen["ids"]["free"]
    lists = seen["lists"]
    (subscription,) = lists["subscription"]
    assert lists["everything"] == [free, one_off, subscription]
    assert lists["one_off"] == [free, one_off]
    assert lists["paid"] == [free]
    assert lists["searched"] == [one_off]
    assert lists["overdue"] == []
    assert lists["dated"] == [free, one_off, subscription]
    assert lists["nobody"] == []

    assert seen["retry_paid"] == {
        "status": 405,
        "body": {"status": 405, "error": "Method Not Allowed", "code": "invalid_status"},
    }
    assert seen["void_paid"] == {
        "status": 405,
        "body": {"status": 405, "error": "Method Not Allowed", "code": "not_voidable"},
    }
    assert seen["voided"] == "voided"
    assert seen["unknown_plan"]["status"] == 404
    assert seen["unknown_plan"]["body"]["code"] == "plans_not_found"

    organization = seen["organization"]
    # Lago's contract lives beside the project (../shared); the contract tests skip without
    # it, and so does this one check. The rest of the flow is checked regardless.
    if CONTRACT.exists():
        check({"organization": organization}, "Organization")
    assert (organization["email"], organization["country"]) == ("billing@js.test", "DE")
    assert (organization["net_payment_term"], organization["email_settings"]) == (
        14,
        ["invoice.finalized"],
    )
    assert organization["webhook_urls"] == ["https://hooks.js.test/lago"]
    assert organization["billing_configuration"]["invoice_footer"] == "Danke"
    assert seen["invalid_organization"] == {
        "status": 422,
        "body": {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": {"country": ["not_a_valid_country_code"]},
        },
    }
    # What the client set is what Billow serves to anyone.
    (endpoint,) = org.api.get("/webhook_endpoints")[1]["webhook_endpoints"]
    assert endpoint["webhook_url"] == "https://hooks.js.test/lago"
    org.api.delete(f"/webhook_endpoints/{endpoint['lago_id']}")  # nobody listens there
