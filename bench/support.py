"""What the benchmarks share: local Billow with moto in a process of its own, Billow's AWS
calls counted on boto3's default session, and DynamoDB's item sizes.

Run as a script, this module is that moto process (``BenchRuntime`` starts it)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT / "layers" / "billow" / "python", ROOT):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import boto3  # noqa: E402

from billow.composition import dependencies  # noqa: E402
from local.runtime import LocalRuntime  # noqa: E402

# -- DynamoDB item sizes ------------------------------------------------------------------


def value_size(value: dict[str, Any]) -> int:
    """Size of one attribute value in DynamoDB's wire format, as DynamoDB counts it."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = data.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: element}) for element in data)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in data)
    return len(json.dumps(data))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


# -- local Billow, metered ----------------------------------------------------------------


class _MotoProcess:
    """moto in a process of its own, so the AWS stand-in does not take the CPU (and the
    GIL) the handlers are measured with; AWS's services do not run on Lambda's CPU."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.stop()
            raise RuntimeError(f"the moto process did not start: {line}")
        self.url = f"http://127.0.0.1:{line[1]}"

    def stop(self) -> None:
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class BenchRuntime(LocalRuntime):
    """The local runtime with moto in its own process (everything else unchanged)."""

    def _start_moto(self) -> None:
        moto = _MotoProcess()
        self._moto = moto  # type: ignore[assignment]
        self._urls["aws"] = moto.url


def serve_moto() -> None:
    """moto with local mode's patches, until stdin closes (this module as a script)."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    from local import moto_patches, moto_speedups  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_speedups.speed_up_moto()
    moto_patches.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print("PORT", server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()


@contextlib.contextmanager
def metered_runtime(sink: io.TextIOBase, register: Callable[[Any], None]) -> Iterator[BenchRuntime]:
    """A started ``BenchRuntime`` whose output (the handlers' logs) goes to ``sink``, with
    ``register`` given the events of the boto3 session Billow's calls are made on.

    Billow's adapters build their clients from boto3's default session on first use; it is
    replaced once the runtime has started and ``register`` hooks onto it before any client
    exists. The runtime's own clients (pollers, tailer, ``wait_idle``) come from a session
    of their own. The runtime stops on leaving."""
    runtime = BenchRuntime()
    with contextlib.redirect_stdout(sink):
        try:
            runtime.start()
            boto3.DEFAULT_SESSION = None
            dependencies.cache_clear()
            boto3.setup_default_session()
            assert boto3.DEFAULT_SESSION is not None
            register(boto3.DEFAULT_SESSION.events)
            yield runtime
        finally:
            runtime.stop()


if __name__ == "__main__":
    serve_moto()
