"""Cold start: what each Lambda handler loads when its module is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from billow.topology import TOPOLOGY, Function

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, json, sys
module, attribute = sys.argv[1].rsplit(".", 1)
getattr(importlib.import_module(module), attribute)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize("function", TOPOLOGY.functions, ids=lambda function: function.name)
def test_handler_imports_never_load_stripe_xray_or_dev_packages(function: Function) -> None:
    """``stripe`` is loaded lazily, by the first Stripe call, and only where one happens;
    the X-Ray SDK only by the first traced call (``billow.tracing``), even in Lambda."""
    layer = ROOT / "layers" / "billow" / "python"
    environment = {
        "PYTHONPATH": f"{ROOT / 'functions' / function.code}:{layer}",
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"billow-{function.code}",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, function.handler],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert "stripe" not in loaded
    assert "aws_xray_sdk" not in loaded
    assert "moto" not in loaded and "localstripe" not in loaded and "aiohttp" not in loaded


def test_only_stripe_calling_functions_reach_the_stripe_adapter() -> None:
    """The adapter is imported only from the composition root, which only those use."""
    importers = [
        path.relative_to(ROOT)
        for path in (ROOT / "layers" / "billow" / "python" / "billow").rglob("*.py")
        if "stripe_gateway import" in path.read_text()
    ]
    assert importers == [Path("layers/billow/python/billow/composition.py")]
