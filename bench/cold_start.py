"""Cold start per Lambda function: import-and-init time in fresh processes, and size.

Each function is imported the way Lambda does it, in a fresh interpreter that sees only
what its bundle would: the runtime requirements (plus boto3, which the Lambda runtime
provides), the ``billow`` layer and the function's own folder. No dev packages (moto,
aiohttp, localstripe) are on the path, so the figures are the bundle's, not the venv's.

For functions that call Stripe, "first Stripe use" adds what the first request pays for
the lazily imported Stripe adapter.

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
print(json.dumps({
    "import_s": imported - start,
    "stripe_s": time.perf_counter() - imported,
    "top_level": loaded,
}))
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


def measure(function: Function) -> dict[str, object]:
    module, attribute = function.handler.rsplit(".", 1)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions" / function.code), str(BILLOW_LAYER), str(DEPS)]
        ),
        "AWS_DEFAULT_REGION": "us-east-1",
        "BILLOW_TABLE_NAME": "billow",
        "BILLOW_EVENT_BUS_NAME": "billow",
        "POWERTOOLS_SERVICE_NAME": "billow",
    }
    stripe_flag = "1" if function.calls_stripe else "0"
    result = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", PROBE, module, attribute, stripe_flag],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = dict(json.loads(result.stdout))
    figures["own_s"] = _own_import_us(result.stderr, module) / 1_000_000
    return figures


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ensure_dependencies()
    own_mb = size_mb([BILLOW_LAYER / "billow"])
    print(f"billow layer (own code): {own_mb:.2f} MB; medians of {args.runs} fresh processes")
    print("(-X importtime adds overhead; compare functions with each other, not with AWS)\n")
    header = (
        f"{'function':<22}{'import+init ms':>15}{'own code ms':>13}"
        f"{'first Stripe use ms':>21}{'layer deps MB':>15}  stripe at import"
    )
    print(header)
    print("-" * len(header))
    for function in TOPOLOGY.functions:
        runs = [measure(function) for _ in range(args.runs)]
        import_ms = statistics.median(float(str(run["import_s"])) for run in runs) * 1000
        own_ms = statistics.median(float(str(run["own_s"])) for run in runs) * 1000
        stripe_ms = statistics.median(float(str(run["stripe_s"])) for run in runs) * 1000
        top_level = [str(name) for name in runs[0]["top_level"]]  # type: ignore[attr-defined]
        print(
            f"{function.name:<22}{import_ms:>15.1f}{own_ms:>13.1f}"
            f"{(f'{stripe_ms:.1f}' if function.calls_stripe else '-'):>21}"
            f"{loaded_size_mb(top_level):>15.1f}  {'YES' if 'stripe' in top_level else 'no'}"
        )


if __name__ == "__main__":
    main()
