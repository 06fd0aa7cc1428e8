"""Cold start per Lambda function: import-and-init time in fresh processes, and size.

Each function is imported the way Lambda does it, in a fresh interpreter that sees only
what its bundle would: the runtime requirements (plus boto3, which the Lambda runtime
provides), the ``billow`` layer and the function's own folder. No dev packages (moto,
aiohttp, localstripe) are on the path, so the figures are the bundle's, not the venv's.

For functions that call Stripe, "first Stripe use" adds what the first request pays for
the lazily imported Stripe adapter; "first traced call" is what the first invocation
pays to build the X-Ray tracer where tracing is on (``billow.tracing``).

Each figure is also given as a ratio to a baseline measured in the same run, the same
way: a fresh interpreter importing only boto3, Powertools' event handler and pydantic,
which every function needs. The functions run as in Lambda (``AWS_LAMBDA_FUNCTION_NAME``
is set), so tracing is on.

Usage: python bench/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "billow" / "python"))

from billow.topology import TOPOLOGY, Function  # noqa: E402

DEPS = ROOT / ".build" / "bench-deps"
BILLOW_LAYER = ROOT / "layers" / "billow" / "python"

PROBE = r"""
import importlib, json, sys, time
start = time.perf_counter()
getattr(importlib.import_module(sys.argv[1]), sys.argv[2])
imported = time.perf_counter()
loaded = sorted({name.split(".")[0] for name in sys.modules})
if sys.argv[3] == "1":
    importlib.import_module("billow.adapters.stripe_gateway")
stripe_done = time.perf_counter()
tracing = sys.modules.get("billow.tracing")
if tracing is not None:
    tracing._tracer()
print(json.dumps({
    "import_s": imported - start,
    "stripe_s": stripe_done - imported,
    "tracer_s": time.perf_counter() - stripe_done if tracing is not None else None,
    "top_level": loaded,
}))
"""

BASELINE = r"""
import json, time
start = time.perf_counter()
import boto3, pydantic
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
print(json.dumps({"import_s": time.perf_counter() - start}))
"""


def _own_import_us(importtime_log: str, handler_module: str) -> int:
    """Sum the self time ``-X importtime`` reports for Billow's modules and the handler."""
    total = 0
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if self_us.isdigit() and (name.split(".")[0] == "billow" or name == handler_module):
            total += int(self_us)
    return total


def ensure_dependencies() -> None:
    """Install the runtime requirements, as the layer has them, into an isolated folder."""
    marker = DEPS / ".requirements"
    wanted = (ROOT / "requirements.txt").read_text() + "boto3\n"
    if marker.exists() and marker.read_text() == wanted:
        return
    DEPS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--upgrade",
            "--target",
            str(DEPS),
            "-r",
            str(ROOT / "requirements.txt"),
            "boto3",
        ],
        check=True,
    )
    marker.write_text(wanted)


def _environment(code: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions" / code), str(BILLOW_LAYER), str(DEPS)]
        ),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"billow-{code}",
        "BILLOW_TABLE_NAME": "billow",
        "BILLOW_EVENT_BUS_NAME": "billow",
        "POWERTOOLS_SERVICE_NAME": "billow",
    }


def _probe(env: dict[str, str], code: str, *args: str) -> tuple[dict[str, object], str]:
    result = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout)), result.stderr


def measure(function: Function) -> dict[str, object]:
    module, attribute = function.handler.rsplit(".", 1)
    stripe_flag = "1" if function.calls_stripe else "0"
    figures, log = _probe(_environment(function.code), PROBE, module, attribute, stripe_flag)
    figures["own_s"] = _own_import_us(log, module) / 1_000_000
    return figures


def baseline_ms(runs: int) -> float:
    """boto3 + Powertools' event handler + pydantic, imported alone, the same way."""
    env = _environment("api")
    return (
        statistics.median(float(str(_probe(env, BASELINE)[0]["import_s"])) for _ in range(runs))
        * 1000
    )


def size_mb(paths: list[Path]) -> float:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(
                f.stat().st_size
                for f in path.rglob("*")
                if f.is_file() and "__pycache__" not in f.parts
            )
    return total / 1_000_000


RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"})
"""Shipped by the Lambda Python runtime, so not part of Billow's layer."""


def loaded_size_mb(top_level: list[str]) -> float:
    """Size on disk of the layer packages the function actually loaded."""
    shipped = [name for name in top_level if name not in RUNTIME_PROVIDED]
    paths = [DEPS / name for name in shipped if (DEPS / name).exists()]
    paths += [DEPS / f"{name}.py" for name in shipped if (DEPS / f"{name}.py").exists()]
    return size_mb(paths)


BEFORE: dict[str, float] = {
    "api": 3.01,
    "stripe_webhook": 2.24,
    "stripe_events": 2.35,
    "stripe_events_sweep": 2.13,
    "publisher": 1.99,
    "webhook_delivery": 2.05,
    "provider_sync": 2.19,
    "billing_run": 2.03,
    "invoice_worker": 2.15,
    "payments": 2.25,
    "dunning": 2.20,
    "dunning_run": 2.01,
    "finance_alerts": 2.08,
}
"""Each function's import+init as a ratio to the baseline, measured by this bench (5 runs)
on the code before the X-Ray tracer was built lazily (commit 239b56e, see the README)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ensure_dependencies()
    own_mb = size_mb([BILLOW_LAYER / "billow"])
    print(f"billow layer (own code): {own_mb:.2f} MB; medians of {args.runs} fresh processes")
    print("(-X importtime adds overhead; compare functions with each other, not with AWS)")
    baseline = baseline_ms(args.runs)
    print(f"baseline (boto3 + Powertools event handler + pydantic): {baseline:.1f} ms\n")
    header = (
        f"{'function':<22}{'import+init ms':>15}{'× baseline':>11}{'before ×':>10}"
        f"{'own code ms':>13}{'first Stripe use ms':>21}{'first traced call ms':>22}"
        f"{'layer deps MB':>15}  stripe at import"
    )
    print(header)
    print("-" * len(header))
    for function in TOPOLOGY.functions:
        runs = [measure(function) for _ in range(args.runs)]
        import_ms = statistics.median(float(str(run["import_s"])) for run in runs) * 1000
        own_ms = statistics.median(float(str(run["own_s"])) for run in runs) * 1000
        stripe_ms = statistics.median(float(str(run["stripe_s"])) for run in runs) * 1000
        traced = [float(str(run["tracer_s"])) for run in runs if run["tracer_s"] is not None]
        tracer = f"{statistics.median(traced) * 1000:.1f}" if traced else "at import"
        before = BEFORE.get(function.name)
        top_level = [str(name) for name in runs[0]["top_level"]]  # type: ignore[attr-defined]
        print(
            f"{function.name:<22}{import_ms:>15.1f}{import_ms / baseline:>11.2f}"
            f"{(f'{before:.2f}' if before else '-'):>10}{own_ms:>13.1f}"
            f"{(f'{stripe_ms:.1f}' if function.calls_stripe else '-'):>21}{tracer:>22}"
            f"{loaded_size_mb(top_level):>15.1f}  {'YES' if 'stripe' in top_level else 'no'}"
        )


if __name__ == "__main__":
    main()
