"""The X-Ray tracer costs nothing at import, and nothing at all where tracing is off."""

from __future__ import annotations

import json
import socket
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


TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"

IN_LAMBDA = {
    "AWS_LAMBDA_FUNCTION_NAME": "billow-api",
    "LAMBDA_TASK_ROOT": "/var/task",
    "_X_AMZN_TRACE_ID": f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1",
}
"""What Lambda sets for an invocation whose trace is sampled."""


def test_in_lambda_the_first_call_builds_the_tracer_and_is_traced() -> None:
    assert _run(IN_LAMBDA) == "False {'event': 1, 'xray_loaded': True}"


def test_in_lambda_the_handler_subsegment_reaches_the_xray_daemon() -> None:
    """A fake daemon (a UDP socket) receives the handler's subsegment, in Lambda's trace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(10)
        port = daemon.getsockname()[1]
        output = _run({**IN_LAMBDA, "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{port}"})
        packet = daemon.recv(65536).decode()
    assert output == "False {'event': 1, 'xray_loaded': True}"
    header, document = packet.split("\n", 1)
    assert json.loads(header) == {"format": "json", "version": 1}
    subsegment = json.loads(document)
    assert subsegment["name"] == "## handler"
    assert subsegment["trace_id"] == TRACE_ID
