"""Cold start per Lambda function: import-and-init time in fresh processes, and size.

Each function is imported the way Lambda does it, in a fresh interpreter that sees only
what its bundle would: the runtime requirements (plus boto3, which the Lambda runtime
provides), the ``billow`` layer and the function's own folder. No dev packages (moto,
aiohttp, localstripe) are on the path, so the figures are the bundle's, not the venv's.

The API imports a route module when a request first needs it (``billow.api.routes``):
"first request routes" is what loading the routes of one typical request
(``FIRST_REQUESTS``) through that index adds, and "+ routes ×" the import with it, so
the ratio a first request really sees is shown beside the import's own. For functions
that call Stripe, "first Stripe use" adds what the first request pays for the lazily
imported Stripe adapter; "first traced call" is what the first invocation
pays to build the X-Ray tracer where tracing is on (``billow.tracing``).

Each figure is also given as a ratio to a baseline measured in the same rounds, the same
way: a fresh interpreter importing only boto3, Powertools' event handler and pydantic's
``BaseModel``, which every function needs. Each round also imports the function as it
was before (its ``functions/`` and layer at git revision ``BEFORE``, when the X-Ray tracer
was still built at import, or at ``--before REF``; against the same dependencies), so
before, after and baseline share one machine state.

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

BEFORE = "239b56ef17452caeeda5bf0050645b2eeaf8ddb9"
"""The last revision whose functions built the X-Ray tracer at import, before
``billow.tracing`` built it on the first traced call: "before" unless ``--before``."""

DEPS = ROOT / ".build" / "bench-deps"
BILLOW_LAYER = ROOT / "layers" / "billow" / "python"

FIRST_REQUESTS = {"api": "/api/v1/customers"}
"""The path of one typical first request, for functions that load routes per request."""

PROBE = r"""
import importlib, json, sys, time
start = time.perf_counter()
getattr(importlib.import_module(sys.argv[1]), sys.argv[2])
imported = time.perf_counter()
loaded = sorted({name.split(".")[0] for name in sys.modules})
first_request = sys.argv[4]
if first_request:
    api = importlib.import_module("billow.api.app")
    if hasattr(api, "include_routes"):  # before it, every route was loaded at import
        routes = importlib.import_module("billow.api.routes")
        api.include_routes([routes.module_for(first_request)])
routes_done = time.perf_counter()
if sys.argv[3] == "1":
    importlib.import_module("billow.adapters.stripe_gateway")
stripe_done = time.perf_counter()
tracing = sys.modules.get("billow.tracing")
if tracing is not None:
    tracing._tracer()
print(json.dumps({
    "import_s": imported - start,
    "routes_s": routes_done - imported,
    "stripe_s": stripe_done - routes_done,
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


def measure(function: Function, trees: list[Path], runs: int) -> list[dict[str, object]]:
    """The function as it is in each of ``trees``, with the baseline, in ``runs`` rounds.

    Each round imports the baseline and then the function from each tree, one fresh
    process after the other, and takes each import's ratio to that round's baseline: a
    machine busy with other work slows a whole round alike, so the ratios stay steady
    where the milliseconds do not. Figures are the medians over the rounds; one more
    import with ``-X importtime`` gives Billow's own share."""
    module, attribute = function.handler.rsplit(".", 1)
    stripe_flag = "1" if function.calls_stripe else "0"
    first_request = FIRST_REQUESTS.get(function.code, "")
    envs = [_environment(tree, function.code) for tree in trees]
    baseline_env = _environment(trees[-1], function.code)
    samples: list[list[dict[str, object]]] = [[] for _ in trees]
    for _ in range(runs):
        baseline_s = float(str(_probe(baseline_env, BASELINE)[0]["import_s"]))
        for env, taken in zip(envs, samples, strict=True):
            sample = _probe(env, PROBE, module, attribute, stripe_flag, first_request)[0]
            import_s = float(str(sample["import_s"]))
            sample["ratio"] = import_s / baseline_s
            sample["routes_ratio"] = (import_s + float(str(sample["routes_s"]))) / baseline_s
            sample["baseline_s"] = baseline_s
            taken.append(sample)
    figures = []
    for env, taken in zip(envs, samples, strict=True):
        # Billow's own share of the import alone, as the import+init column.
        _, log = _probe(env, PROBE, module, attribute, stripe_flag, "", importtime=True)
        traced = [float(str(run["tracer_s"])) for run in taken if run["tracer_s"] is not None]
        figures.append(
            {
                "import_ms": _median(taken, "import_s") * 1000,
                "baseline_ms": _median(taken, "baseline_s") * 1000,
                "ratio": _median(taken, "ratio"),
                "routes_ms": _median(taken, "routes_s") * 1000 if first_request else None,
                "routes_ratio": _median(taken, "routes_ratio"),
                "stripe_ms": _median(taken, "stripe_s") * 1000,
                "tracer_ms": statistics.median(traced) * 1000 if traced else None,
                "own_ms": _own_import_us(log, module) / 1000,
                "top_level": taken[0]["top_level"],
            }
        )
    return figures


def _median(samples: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(str(sample[key])) for sample in samples)


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
        "--before",
        metavar="REF",
        default=BEFORE,
        help=f"the git revision measured as before (default {BEFORE[:7]}, the tracer at import)",
    )
    args = parser.parse_args()
    ensure_dependencies()
    own_mb = size_mb([BILLOW_LAYER / "billow"])
    print(f"billow layer (own code): {own_mb:.2f} MB; medians of {args.runs} rounds")
    print("× baseline: import+init over the baseline's (boto3, Powertools' event handler,")
    print("pydantic) in the same round; ms vary with the machine's load, ratios much less")
    print(f"before: the functions at {args.before}\n")
    with tempfile.TemporaryDirectory() as scratch:
        before_tree = checkout(args.before, Path(scratch))
        header = (
            f"{'function':<22}{'baseline ms':>12}{'before ms':>11}{'before ×':>10}"
            f"{'import+init ms':>15}{'× baseline':>11}{'first request routes ms':>25}"
            f"{'+ routes ×':>12}{'own code ms':>13}"
            f"{'first Stripe use ms':>21}{'first traced call ms':>22}{'layer deps MB':>15}"
            "  stripe at import"
        )
        print(header)
        print("-" * len(header))
        for function in TOPOLOGY.functions:
            existed = (before_tree / "functions" / function.code).exists()
            figures = measure(function, [before_tree, ROOT] if existed else [ROOT], args.runs)
            now = figures[-1]
            before = f"{'-':>11}{'-':>10}"
            if existed:
                before = f"{float(str(figures[0]['import_ms'])):>11.1f}"
                before += f"{float(str(figures[0]['ratio'])):>10.2f}"
            tracer_ms = now["tracer_ms"]
            tracer = "at import" if tracer_ms is None else f"{float(str(tracer_ms)):.1f}"
            stripe = f"{float(str(now['stripe_ms'])):.1f}" if function.calls_stripe else "-"
            routes_ms, routes = now["routes_ms"], f"{'-':>25}{'-':>12}"
            if routes_ms is not None:
                routes = f"{float(str(routes_ms)):>25.1f}{float(str(now['routes_ratio'])):>12.2f}"
            top_level = [str(name) for name in now["top_level"]]  # type: ignore[attr-defined]
            print(
                f"{function.name:<22}{float(str(now['baseline_ms'])):>12.1f}{before}"
                f"{float(str(now['import_ms'])):>15.1f}{float(str(now['ratio'])):>11.2f}"
                f"{routes}{float(str(now['own_ms'])):>13.1f}{stripe:>21}{tracer:>22}"
                f"{loaded_size_mb(top_level):>15.1f}  {'YES' if 'stripe' in top_level else 'no'}"
            )


if __name__ == "__main__":
    main()
