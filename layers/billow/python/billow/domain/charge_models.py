"""Lago's charge models: what a period's usage of a billable metric costs.

Lago prices usage in the currency's major units with exact decimals and rounds once, at
the end, to the currency's minor unit (half up). Billow does the same with ``Decimal``:
``charge_amount`` gives the exact amount, the rounded ``amount_cents`` and the breakdown
Lago shows on the fee (``amount_details``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError

from billow.domain.catalog import Number, plain
from billow.domain.errors import ValidationFailed
from billow.domain.money import currency_exponent

ChargeModel = Literal[
    "standard", "graduated", "volume", "package", "percentage", "graduated_percentage"
]
HUNDRED = Decimal(100)


def _not_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("value_is_out_of_range")
    return value


Amount = Annotated[Number, AfterValidator(_not_negative)]


def _whole(value: object) -> object:
    """Lago's range bounds and sizes are integers; JSON clients may send ``10.0``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Whole = Annotated[int, BeforeValidator(_whole), Field(ge=0)]


class _Properties(BaseModel):
    """A model's properties; keys of other models are ignored, as Lago ignores them."""


class StandardProperties(_Properties):
    amount: Amount


class Range(BaseModel):
    from_value: Whole
    to_value: Whole | None
    per_unit_amount: Amount
    flat_amount: Amount


class PercentageRange(BaseModel):
    from_value: Whole
    to_value: Whole | None
    rate: Amount
    flat_amount: Amount


def _contiguous(ranges: Sequence[Range | PercentageRange]) -> bool:
    """Lago's tiers: from 0, each next one starting at the previous end (or one past it),
    each ending above its start, only the last one open."""
    if not ranges or ranges[0].from_value != 0:
        return False
    for index, tier in enumerate(ranges):
        last = index == len(ranges) - 1
        if (tier.to_value is None) != last:
            return False
        if tier.to_value is not None and tier.to_value <= tier.from_value:
            return False
        if index and tier.from_value not in (
            ranges[index - 1].to_value,
            (ranges[index - 1].to_value or 0) + 1,
        ):
            return False
    return True


class GraduatedProperties(_Properties):
    graduated_ranges: list[Range]


class VolumeProperties(_Properties):
    volume_ranges: list[Range]


class PackageProperties(_Properties):
    amount: Amount
    package_size: Annotated[int, BeforeValidator(_whole), Field(ge=1)]
    free_units: Whole = 0


class PercentageProperties(_Properties):
    rate: Amount
    fixed_amount: Amount | None = None
    free_units_per_events: Whole | None = None
    free_units_per_total_aggregation: Amount | None = None


class GraduatedPercentageProperties(_Properties):
    graduated_percentage_ranges: list[PercentageRange]


ChargeProperties = (
    StandardProperties
    | GraduatedProperties
    | VolumeProperties
    | PackageProperties
    | PercentageProperties
    | GraduatedPercentageProperties
)

_MODELS: dict[str, type[_Properties]] = {
    "standard": StandardProperties,
    "graduated": GraduatedProperties,
    "volume": VolumeProperties,
    "package": PackageProperties,
    "percentage": PercentageProperties,
    "graduated_percentage": GraduatedPercentageProperties,
}
_RANGES = {
    "graduated": "graduated_ranges",
    "volume": "volume_ranges",
    "graduated_percentage": "graduated_percentage_ranges",
}


def parse_properties(charge_model: ChargeModel, raw: dict[str, Any] | None) -> ChargeProperties:
    """A charge's properties, or a 422 naming each wrong one with Lago's codes
    (``invalid_amount``, ``invalid_graduated_ranges``, ``invalid_package_size``…)."""
    try:
        parsed = _MODELS[charge_model].model_validate(raw or {})
    except ValidationError as error:
        fields = sorted({str(issue["loc"][0]) for issue in error.errors() if issue["loc"]})
        raise ValidationFailed({field: [f"invalid_{field}"] for field in fields}) from None
    ranges_field = _RANGES.get(charge_model)
    if ranges_field is not None and not getattr(parsed, ranges_field):
        raise ValidationFailed({ranges_field: [f"missing_{ranges_field}"]})
    if ranges_field is not None and not _contiguous(getattr(parsed, ranges_field)):
        raise ValidationFailed({ranges_field: [f"invalid_{ranges_field}"]})
    return parsed  # type: ignore[return-value]


def properties_as_lago(properties: ChargeProperties) -> dict[str, Any]:
    """Lago's ChargeProperties for the model: decimals as plain strings."""

    def shown(value: object) -> object:
        if isinstance(value, Decimal):
            return plain(value)
        if isinstance(value, list):
            return [shown(item) for item in value]
        if isinstance(value, dict):
            return {key: shown(item) for key, item in value.items()}
        return value

    return {key: shown(value) for key, value in properties.model_dump().items()}


class Usage(BaseModel):
    units: Decimal
    """The period's units, already rounded by the metric."""
    events_count: int
    first_event_values: list[Decimal] = Field(default_factory=list)
    """The values of the period's earliest events, oldest first (percentage's free events)."""


class ChargeAmount(BaseModel):
    amount_cents: int
    precise_amount: Decimal
    """Major units, before rounding to the currency."""
    unit_amount_cents: int
    amount_details: dict[str, object]


def _tiers(
    ranges: Sequence[Range | PercentageRange], units: Decimal
) -> list[tuple[Range | PercentageRange, Decimal]]:
    """The tiers ``units`` reaches and the units in each. A tier that starts one past the
    previous end (``from_value = previous to + 1``) counts its first unit too, as Lago
    counts it; the first tier is always reached (its flat amount is due at 0 units)."""
    reached: list[tuple[Range | PercentageRange, Decimal]] = []
    for index, tier in enumerate(ranges):
        adjacent = index > 0 and tier.from_value == ranges[index - 1].to_value
        start = Decimal(
            tier.from_value if tier.from_value == 0 or adjacent else tier.from_value - 1
        )
        if index and units <= start:
            break
        top = units if tier.to_value is None else min(units, Decimal(tier.to_value))
        reached.append((tier, max(Decimal(0), top - start)))
        if tier.to_value is None or tier.to_value >= units:
            break
    return reached


def _standard(properties: StandardProperties, usage: Usage) -> tuple[Decimal, dict[str, object]]:
    return usage.units * properties.amount, {}


def _tiered(
    ranges: Sequence[Range | PercentageRange], units: Decimal
) -> tuple[Decimal, list[dict[str, object]]]:
    """Graduated tiers, each priced on its own units (per unit, or a percentage of the
    units for ``graduated_percentage``) plus its flat amount; Lago's breakdown of each."""
    total = Decimal(0)
    details: list[dict[str, object]] = []
    for tier, tier_units in _tiers(ranges, units):
        if isinstance(tier, Range):
            priced, price = (
                tier_units * tier.per_unit_amount,
                {"per_unit_amount": plain(tier.per_unit_amount)},
            )
        elif tier_units:
            priced, price = tier_units * tier.rate / HUNDRED, {"rate": plain(tier.rate)}
        else:
            break  # Lago: a percentage tier without units adds nothing, not even its flat
        total += priced + tier.flat_amount
        details.append(
            {
                "units": plain(tier_units),
                "from_value": tier.from_value,
                "to_value": tier.to_value,
                "flat_unit_amount": plain(tier.flat_amount),
                **price,
                "per_unit_total_amount": plain(priced),
                "total_with_flat_amount": plain(priced + tier.flat_amount),
            }
        )
    return total, details


def _graduated(properties: GraduatedProperties, usage: Usage) -> tuple[Decimal, dict[str, object]]:
    total, details = _tiered(properties.graduated_ranges, usage.units)
    return total, {"graduated_ranges": details}


def _volume(properties: VolumeProperties, usage: Usage) -> tuple[Decimal, dict[str, object]]:
    """Every unit at the price of the one tier the whole volume falls in."""
    whole = math.ceil(usage.units)
    tier = next(
        (t for t in properties.volume_ranges if t.to_value is None or whole <= t.to_value),
        properties.volume_ranges[-1],
    )
    per_unit = usage.units * tier.per_unit_amount
    return per_unit + tier.flat_amount, {
        "flat_unit_amount": plain(tier.flat_amount),
        "per_unit_amount": plain(tier.per_unit_amount),
        "per_unit_total_amount": plain(per_unit),
    }


def _package(properties: PackageProperties, usage: Usage) -> tuple[Decimal, dict[str, object]]:
    paid = max(Decimal(0), usage.units - properties.free_units)
    packages = math.ceil(paid / properties.package_size) if paid else 0
    return packages * properties.amount, {
        "free_units": plain(min(usage.units, Decimal(properties.free_units))),
        "paid_units": plain(paid),
        "per_package_size": properties.package_size,
        "per_package_unit_amount": plain(properties.amount),
    }


def _percentage(
    properties: PercentageProperties, usage: Usage
) -> tuple[Decimal, dict[str, object]]:
    free_events = 0
    if properties.free_units_per_events is not None:
        free_events = min(properties.free_units_per_events, usage.events_count)
        free_units = sum(usage.first_event_values[:free_events], Decimal(0))
    elif properties.free_units_per_total_aggregation is not None:
        free_units = min(usage.units, properties.free_units_per_total_aggregation)
    else:
        free_units = Decimal(0)
    paid_units = max(Decimal(0), usage.units - free_units)
    rate_part = paid_units * properties.rate / HUNDRED
    paid_events = max(0, usage.events_count - free_events)
    # No usage, no fixed fee: Lago charges it per paid event only when units were used.
    fixed = (properties.fixed_amount or Decimal(0)) * paid_events if usage.units else Decimal(0)
    return rate_part + fixed, {
        "units": plain(usage.units),
        "free_units": plain(free_units),
        "paid_units": plain(paid_units),
        "free_events": free_events,
        "paid_events": paid_events,
        "rate": plain(properties.rate),
        "per_unit_total_amount": plain(rate_part),
        "fixed_fee_unit_amount": plain(properties.fixed_amount or Decimal(0)),
        "fixed_fee_total_amount": plain(fixed),
    }


def _graduated_percentage(
    properties: GraduatedPercentageProperties, usage: Usage
) -> tuple[Decimal, dict[str, object]]:
    total, details = _tiered(properties.graduated_percentage_ranges, usage.units)
    return total, {"graduated_percentage_ranges": details}


def charge_amount(properties: ChargeProperties, usage: Usage, currency: str) -> ChargeAmount:
    """What the period's usage costs under the model, exact and in minor units."""
    if isinstance(properties, StandardProperties):
        amount, details = _standard(properties, usage)
    elif isinstance(properties, GraduatedProperties):
        amount, details = _graduated(properties, usage)
    elif isinstance(properties, VolumeProperties):
        amount, details = _volume(properties, usage)
    elif isinstance(properties, PackageProperties):
        amount, details = _package(properties, usage)
    elif isinstance(properties, PercentageProperties):
        amount, details = _percentage(properties, usage)
    else:
        amount, details = _graduated_percentage(properties, usage)
    scale = Decimal(10) ** currency_exponent(currency)
    cents = int((amount * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    unit = (
        int((amount * scale / usage.units).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if usage.units
        else 0
    )
    return ChargeAmount(
        amount_cents=cents,
        precise_amount=amount,
        unit_amount_cents=unit,
        amount_details=details,
    )
