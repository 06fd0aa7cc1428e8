"""The X-Ray tracer costs nothing at import, and nothing at all where tracing is off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LAYER = Path(__file__).resolve().parents[2] / "layers" / "billow" / "python"

SCRIPT = """
import sys
from billow import tracing

@tracing.capture_lambda_handler
def handler(event, context):
    return {"event": event, "xray_loaded": "aws_xray_sdk" in sys.modules}

print("aws_xray_sdk" in sys.modules, handler(1, None))
"""


def _run(environment: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PYTHONPATH": str(LAYER), **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_outside_lambda_the_xray_sdk_is_never_imported() -> None:
    assert _run({}) == "False {'event': 1, 'xray_loaded': False}"


def test_tracing_disabled_in_lambda_never_imports_the_xray_sdk() -> None:
    environment = {"AWS_LAMBDA_FUNCTION_NAME": "billow-api", "POWERTOOLS_TRACE_DISABLED": "true"}
    assert _run(environment) == "False {'event': 1, 'xray_loaded': False}"


def test_in_lambda_the_first_call_builds_the_tracer_and_is_traced() -> None:
    environment = {
        "AWS_LAMBDA_FUNCTION_NAME": "billow-api",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_X_AMZN_TRACE_ID": (
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        ),
    }
    assert _run(environment) == "False {'event': 1, 'xray_loaded': True}"
