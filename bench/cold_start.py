"""Cold start per Lambda function: import-and-init time in fresh processes, and size.

Each function is imported the way Lambda does it, in a fresh interpreter that sees only
what its bundle would: the runtime requirements (plus boto3, which the Lambda runtime
provides), the ``billow`` layer and the function's own folder. No dev packages (moto,
aiohttp, localstripe) are on the path, so the figures are the bundle's, not the venv's.

For functions that call Stripe, "first Stripe use" adds what the first request pays for
the lazily imported Stripe adapter; "first traced call" is what the first invocation
pays to build the X-Ray tracer where tracing is on (``billow.tracing``).

Each figure is also given as a ratio to a baseline measured in the same run, the same
way: a fresh interpreter importing only boto3, Powertools' event handler and pydantic's
``BaseModel``, which every function needs. With ``--before REF`` the same run also
measures the functions as they were at git revision REF (its ``functions/`` and layer,
against the same dependencies and baseline), so before and after share one machine state.

The functions run as in Lambda: ``AWS_LAMBDA_FUNCTION_NAME`` and ``LAMBDA_TASK_ROOT`` are
set, so tracing is on and the X-Ray SDK takes its Lambda path (sampling is decided by
Lambda, so the SDK builds no sampler clients, which it does everywhere else). Times are
taken without ``-X importtime``, which inflates them; one extra run per function with it
gives Billow's own share.

Usage: python bench/cold_start.py [--runs N] [--before REF]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
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
import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from pydantic import BaseModel
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


def _environment(tree: Path, code: str) -> dict[str, str]:
    """What Lambda gives the function's process (``tree`` is a checkout of Billow)."""
    function_root = tree / "functions" / code
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(
            [str(function_root), str(tree / "layers" / "billow" / "python"), str(DEPS)]
        ),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"billow-{code}",
        "LAMBDA_TASK_ROOT": str(function_root),
        "BILLOW_TABLE_NAME": "billow",
        "BILLOW_EVENT_BUS_NAME": "billow",
        "POWERTOOLS_SERVICE_NAME": "billow",
    }


def _probe(
    env: dict[str, str], code: str, *args: str, importtime: bool = False
) -> tuple[dict[str, object], str]:
    flags = ["-X", "importtime"] if importtime else []
    result = subprocess.run(
        [sys.executable, "-S", *flags, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout)), result.stderr


def measure(tree: Path, function: Function, runs: int) -> dict[str, object]:
    """Medians of ``runs`` fresh imports, and Billow's own share from one traced import."""
    module, attribute = function.handler.rsplit(".", 1)
    stripe_flag = "1" if function.calls_stripe else "0"
    env = _environment(tree, function.code)
    samples = [_probe(env, PROBE, module, attribute, stripe_flag)[0] for _ in range(runs)]
    _, log = _probe(env, PROBE, module, attribute, stripe_flag, importtime=True)
    traced = [float(str(run["tracer_s"])) for run in samples if run["tracer_s"] is not None]
    return {
        "import_ms": _median_ms(samples, "import_s"),
        "stripe_ms": _median_ms(samples, "stripe_s"),
        "tracer_ms": statistics.median(traced) * 1000 if traced else None,
        "own_ms": _own_import_us(log, module) / 1000,
        "top_level": samples[0]["top_level"],
    }


def _median_ms(samples: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(str(sample[key])) for sample in samples) * 1000


def checkout(revision: str, into: Path) -> Path:
    """The ``functions/`` and ``layers/`` folders of ``revision``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "functions", "layers"],
        capture_output=True,
        check=True,
    ).stdout
    tar_path = into / "tree.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def baseline_ms(runs: int) -> float:
    """boto3 + Powertools' event handler + pydantic, imported alone, the same way."""
    env = _environment(ROOT, "api")
    return _median_ms([_probe(env, BASELINE)[0] for _ in range(runs)], "import_s")


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
    parser.add_argument(
        "--before", metavar="REF", help="also measure the functions as of this git revision"
    )
    args = parser.parse_args()
    ensure_dependencies()
    own_mb = size_mb([BILLOW_LAYER / "billow"])
    print(f"billow layer (own code): {own_mb:.2f} MB; medians of {args.runs} fresh processes")
    with tempfile.TemporaryDirectory() as scratch:
        before_tree = checkout(args.before, Path(scratch)) if args.before else None
        baseline = baseline_ms(args.runs)
        print(f"baseline (boto3 + Powertools event handler + pydantic): {baseline:.1f} ms\n")
        before_header = f"{'before ms':>11}{'before ×':>10}" if before_tree else ""
        header = (
            f"{'function':<22}{before_header}{'import+init ms':>15}{'× baseline':>11}"
            f"{'own code ms':>13}{'first Stripe use ms':>21}{'first traced call ms':>22}"
            f"{'layer deps MB':>15}  stripe at import"
        )
        print(header)
        print("-" * len(header))
        for function in TOPOLOGY.functions:
            before = ""
            if before_tree and (before_tree / "functions" / function.code).exists():
                then = measure(before_tree, function, args.runs)
                then_ms = float(str(then["import_ms"]))
                before = f"{then_ms:>11.1f}{then_ms / baseline:>10.2f}"
            elif before_tree:
                before = f"{'-':>11}{'-':>10}"
            now = measure(ROOT, function, args.runs)
            import_ms = float(str(now["import_ms"]))
            tracer_ms = now["tracer_ms"]
            tracer = "at import" if tracer_ms is None else f"{float(str(tracer_ms)):.1f}"
            stripe = f"{float(str(now['stripe_ms'])):.1f}" if function.calls_stripe else "-"
            top_level = [str(name) for name in now["top_level"]]  # type: ignore[attr-defined]
            print(
                f"{function.name:<22}{before}{import_ms:>15.1f}{import_ms / baseline:>11.2f}"
                f"{float(str(now['own_ms'])):>13.1f}{stripe:>21}{tracer:>22}"
                f"{loaded_size_mb(top_level):>15.1f}  {'YES' if 'stripe' in top_level else 'no'}"
            )


if __name__ == "__main__":
    main()
