"""Lambda: loading each function's handler as a warm container does, invoking it with
the context object the Python runtime passes, and reading partial batch responses as the
event source mappings do."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billow.topology import Function, Topology
from local.resources import REGION

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class LambdaContext:
    """The context object the Python Lambda runtime passes to every handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_monotonic: float
    identity: None = None
    client_context: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))


def lambda_context(function: Function, account_id: str) -> LambdaContext:
    return LambdaContext(
        function_name=function.name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{account_id}:function:{function.name}",
        memory_limit_in_mb=function.memory_mb,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function.name}",
        log_stream_name=f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        deadline_monotonic=time.monotonic() + function.timeout_s,
    )


class Functions:
    """Loads each function's handler once, like a warm container, and invokes it.

    Several functions share a module name (``handler``) in their own folders, which Lambda
    keeps apart with one process per function; here each entry module gets a unique name.

    A Lambda execution environment serves one invocation at a time, and Powertools keeps
    per-request state on module-level objects (the API resolver's current event and
    context, a batch processor's records). In one process those objects are shared, so
    each function runs one invocation at a time here: two concurrent API requests would
    otherwise see each other's organization.
    """

    def __init__(self, topology: Topology, root: Path, account_id: str) -> None:
        self._topology = topology
        self._root = root
        self._account_id = account_id
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._running: dict[str, threading.Lock] = {
            function.name: threading.Lock() for function in topology.functions
        }
        self._modules: list[str] = []
        self._paths: list[str] = []

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        function = self._topology.function(name)
        handler = self._handler(function)
        with self._running[name]:
            result = handler(event, lambda_context(function, self._account_id))
        try:
            # Lambda hands callers the JSON of the result, never the Python object.
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            raise RuntimeError(f"Runtime.MarshalError: {name} returned non-JSON: {exc}") from exc

    def unload(self) -> None:
        """Forget the loaded handlers so the next runtime gets cold starts."""
        for module in self._modules:
            sys.modules.pop(module, None)
        for path in self._paths:
            with contextlib.suppress(ValueError):
                sys.path.remove(path)
        self._handlers.clear()

    def _handler(self, function: Function) -> Handler:
        with self._lock:
            if function.name not in self._handlers:
                self._handlers[function.name] = self._load(function)
            return self._handlers[function.name]

    def _load(self, function: Function) -> Handler:
        folder = (self._root / function.code).resolve()
        module_path, _, attribute = function.handler.rpartition(".")
        source = folder.joinpath(*module_path.split(".")).with_suffix(".py")
        if not source.is_file():
            raise ImportError(f"Runtime.ImportModuleError: {function.name}: no {source}")
        _refuse_shadowed_siblings(folder)
        unique = "_billow_fn__" + re.sub(r"\W", "_", f"{function.code}__{module_path}")
        spec = importlib.util.spec_from_file_location(unique, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"Runtime.ImportModuleError: {function.name}: cannot load {source}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        sys.path.insert(0, str(folder))  # siblings first while importing, as in /var/task
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
        finally:
            sys.path.remove(str(folder))
        self._modules.append(unique)
        if str(folder) not in sys.path:  # late imports inside handlers still find siblings
            sys.path.append(str(folder))
            self._paths.append(str(folder))
        handler: Handler = getattr(module, attribute)
        return handler


def _refuse_shadowed_siblings(folder: Path) -> None:
    """Fail loudly where one shared process would silently differ from one process each.

    If another code folder (or a library) already loaded a top-level module this folder
    also defines, this function would get that one instead of its own sibling.
    """
    for entry in folder.iterdir():
        if entry.suffix == ".py":
            name = entry.stem
        elif (entry / "__init__.py").is_file():
            name = entry.name
        else:
            continue
        origin = getattr(sys.modules.get(name), "__file__", None)
        if origin and not Path(origin).resolve().is_relative_to(folder):
            raise ImportError(
                f"{entry} would be shadowed by the already loaded module {name!r} from "
                f"{origin}; in local mode all functions share one process, rename one of them"
            )


def log_handler_failure(function: str, trigger: str) -> None:
    logger.exception(
        "\n%s\n!! %s raised while handling %s (see the traceback below)\n%s",
        "!" * 88,
        function,
        trigger,
        "!" * 88,
    )


def wire_json(value: Any) -> Any:
    """Turn botocore's parsed values back into the JSON Lambda events carry."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {key: wire_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [wire_json(item) for item in value]
    return value


def batch_item_failures(result: Any, identifiers: Sequence[str]) -> set[str]:
    """Read a partial batch response the way Lambda does.

    No (or an empty) ``batchItemFailures`` list means everything succeeded; an entry that
    names nothing in the batch makes Lambda treat the whole batch as failed.
    """
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(identifiers)
    failed: set[str] = set()
    for entry in failures:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or identifier not in identifiers:
            return set(identifiers)
        failed.add(identifier)
    return failed


class Activity:
    """Bumped whenever a poller takes work and when it finishes it, so ``wait_idle`` can tell
    a quiet moment from one where work merely changed hands between two checks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def touch(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count
