"""The admin CLI, as an operator runs it: against local mode and against a stack's table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ApiClient

ROOT = Path(__file__).resolve().parents[2]


def admin(*args: str, env: dict[str, str] | None = None) -> Any:
    run = subprocess.run(
        [sys.executable, str(ROOT / "admin.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_create_organization_in_local_mode(local_billow: Any) -> None:
    created = admin("create-organization", "--name", "Via CLI", "--local", local_billow.api_url)
    assert created["name"] == "Via CLI" and created["hmac_key"]
    assert ApiClient(local_billow.api_url, created["api_key"]).get("/customers")[0] == 200


def test_create_organization_in_a_stacks_table(local_billow: Any) -> None:
    """The deployed path writes straight to the table with the caller's AWS credentials;
    here the table is moto's, which the local API serves from."""
    stack = {
        "AWS_ENDPOINT_URL": local_billow.aws_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }
    created = admin(
        "create-organization",
        "--name",
        "Deployed",
        "--api-key",
        "cli-chosen-key-0123456789",
        "--table",
        "billow",
        "--region",
        "us-east-1",
        env=stack,
    )
    assert created["api_key"] == "cli-chosen-key-0123456789"
    assert ApiClient(local_billow.api_url, created["api_key"]).get("/customers")[0] == 200

    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "admin.py"),
            *("create-organization", "--name", "Twin", "--table", "billow"),
            *("--api-key", "cli-chosen-key-0123456789"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **stack},
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.strip() == 'error: refused: {"api_key": ["value_already_exist"]}'


def test_fire_a_schedule(local_billow: Any) -> None:
    result = admin(
        "fire-schedule",
        "stripe-events-sweep",
        "--time",
        "2020-01-01T00:00:00Z",
        "--local",
        local_billow.api_url,
    )
    # Nothing was in flight or left unprocessed in 2019: only events lost by the emulator,
    # if any, could need repairing.
    report = result["result"]
    assert (report["events_republished"], report["payments_settled"]) == (0, 0)
    assert report["attempts_redriven"] == 0
