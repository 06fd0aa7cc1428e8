"""X-Ray tracing through Powertools' Tracer, built on a function's first invocation.

Building the Tracer imports the X-Ray SDK, whose import creates its recorder and
sampler: about 145 ms, half of what a function otherwise pays at import. Handlers
decorate with these two functions instead of a module-level Tracer, so that cost
leaves the import. Where tracing is off (``POWERTOOLS_TRACE_DISABLED``, and everywhere
outside Lambda, which Powertools detects itself), the SDK is never imported; in Lambda
with active tracing the first invocation builds the Tracer and every invocation is
traced as before (handler segment, method subsegments, patched AWS calls).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])

SERVICE = "billow"


def _enabled() -> bool:
    """Powertools' own rule: off when disabled by setting, or outside a Lambda function."""
    disabled = os.getenv("POWERTOOLS_TRACE_DISABLED", "false").lower() in {"1", "true"}
    return not disabled and bool(os.getenv("AWS_LAMBDA_FUNCTION_NAME"))


@functools.cache
def _tracer() -> Tracer:
    from aws_lambda_powertools import Tracer  # noqa: PLC0415  (the import is the cost)

    return Tracer(service=SERVICE)


def _traced(function: F, wrap: Callable[[Tracer, F], Callable[..., Any]]) -> F:
    """``function``, wrapped by the Tracer at its first call when tracing is on."""
    wrapped: list[Callable[..., Any]] = []

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not wrapped:
            wrapped.append(wrap(_tracer(), function) if _enabled() else function)
        return wrapped[0](*args, **kwargs)

    return call  # type: ignore[return-value]


def capture_lambda_handler(handler: F) -> F:
    """The handler's segment (cold start, response and errors), as Tracer's decorator."""
    return _traced(handler, lambda tracer, f: tracer.capture_lambda_handler(f))


def capture_method(method: F) -> F:
    """A subsegment per call, as Tracer's ``capture_method``."""
    return _traced(method, lambda tracer, f: tracer.capture_method(f))
