"""Errors the use cases raise; the API layer turns them into Lago's error shape."""

from __future__ import annotations


class BillowError(Exception):
    """Base class for expected failures (never a 500)."""


class NotFound(BillowError):
    """The object does not exist in the caller's organization."""

    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource} not found")
        self.resource = resource

    @property
    def code(self) -> str:
        return f"{self.resource}_not_found"


class ValidationFailed(BillowError):
    """Input that is well-formed but not acceptable: a Lago 422 with per-field details."""

    def __init__(self, details: dict[str, object], code: str = "validation_errors") -> None:
        super().__init__(f"{code}: {details}")
        self.details = details
        self.code = code


class NotAllowed(ValidationFailed):
    """The object's state forbids the action (voiding a paid invoice, retrying its payment).

    Lago answers these 405 with only a code. It is a kind of :class:`ValidationFailed`, so
    callers that treat every refusal alike (dunning skipping an invoice paid meanwhile) keep
    doing so."""

    def __init__(self, code: str) -> None:
        super().__init__({}, code=code)


class ProviderError(BillowError):
    """Stripe refused or failed a call. ``retryable`` errors are worth the same call again."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.code = code
        self.http_status = http_status
        self.request_id = request_id

    @property
    def retryable(self) -> bool:
        return self.kind in {"rate_limit", "connection", "api"}

    @property
    def rejects_credentials(self) -> bool:
        return self.kind in {"authentication", "permission"}

    def as_provider_error(self) -> dict[str, str | None]:
        """The ``provider_error`` object of Lago's error webhooks."""
        return {"message": self.message, "error_code": self.code or self.kind}


def provider_rejection(error: ProviderError, field: str) -> ValidationFailed:
    """Lago's 422 for a third party refusing: the field at fault and Stripe's own words."""
    return ValidationFailed(
        {
            field: [error.code or error.kind],
            "third_party": "stripe",
            "thirdparty_error": error.message,
        },
        code="third_party_error",
    )


class ConcurrentUpdate(BillowError):
    """A conditional write lost a race; the caller may re-read and retry."""
