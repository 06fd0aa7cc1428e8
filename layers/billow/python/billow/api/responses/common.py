"""Building blocks shared by every response: the base model, Lago's scalar formats,
pagination and the error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


class LagoObject(BaseModel):
    """A JSON object exactly as served: no field the model does not declare.

    Schemas are built on first use (``defer_build``), so importing the API does not pay
    for models a request never touches (cold starts)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An ISO 8601 UTC date-time, as Billow stores and serves it (``2024-05-01T00:00:00Z``)."""

Day = Annotated[str, WithJsonSchema({"type": "string", "format": "date"})]
"""A calendar date (``2024-05-01``)."""

NoItems = Annotated[list[Any], Field(max_length=0)]
"""A list Lago fills for features Billow does not have (usage charges, custom sections,
integrations…): always served, always empty."""


class StripeSyncErrorObject(LagoObject):
    code: str
    """Stripe's error code (``resource_missing``, ``parameter_invalid_integer``…)."""
    message: str


class StripeSyncObject(LagoObject):
    """Billow's own addition: where the object stands in Stripe Billing."""

    status: Literal["pending", "succeeded", "failed", "not_required"]
    stripe_id: str | None
    stripe_url: str | None
    """The object in Stripe's dashboard."""
    reason: str | None
    """Why the object is not synced (``not_required``), e.g. ``catalog_sync_disabled``."""
    error: StripeSyncErrorObject | None
    """Stripe's answer when the sync ``failed``."""
    synced_at: Timestamp | None


class PaginationMeta(LagoObject):
    """Lago's ``meta`` block of every list."""

    current_page: int
    next_page: int | None
    prev_page: int | None
    total_pages: int
    total_count: int


class ErrorBody(BaseModel):
    """Lago's error body. ``code`` names the error (``validation_errors``,
    ``customer_not_found``); ``error_details`` says which fields failed and why."""

    status: int
    error: str
    code: Annotated[str | None, WithJsonSchema({"type": "string"})] = Field(
        default=None, exclude_if=lambda value: value is None
    )
    error_details: Annotated[dict[str, Any] | None, WithJsonSchema({"type": "object"})] = Field(
        default=None, exclude_if=lambda value: value is None
    )
