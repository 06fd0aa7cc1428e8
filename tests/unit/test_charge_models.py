"""Lago's charge models against amounts worked out by hand (major units, then rounded half
up to the currency's minor unit)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billow.domain.charge_models import (
    ChargeModel,
    Usage,
    charge_amount,
    parse_properties,
    properties_as_lago,
)
from billow.domain.errors import ValidationFailed

GRADUATED = {
    "graduated_ranges": [
        {"from_value": 0, "to_value": 10, "flat_amount": "10", "per_unit_amount": "0.5"},
        {"from_value": 11, "to_value": None, "flat_amount": "0", "per_unit_amount": "0.4"},
    ]
}
VOLUME = {
    "volume_ranges": [
        {"from_value": 0, "to_value": 100, "flat_amount": "2", "per_unit_amount": "1"},
        {"from_value": 101, "to_value": None, "flat_amount": "0", "per_unit_amount": "0.5"},
    ]
}


def cents(
    model: ChargeModel,
    properties: dict[str, Any],
    units: str,
    events: int = 1,
    first: list[str] | None = None,
    currency: str = "EUR",
) -> int:
    usage = Usage(
        units=Decimal(units),
        events_count=events,
        first_event_values=[Decimal(v) for v in first or []],
    )
    return charge_amount(parse_properties(model, properties), usage, currency).amount_cents


@pytest.mark.parametrize(
    ("model", "properties", "units", "expected"),
    [
        ("standard", {"amount": "0.05"}, "7", 35),  # 7 × 0.05
        ("standard", {"amount": "0.333"}, "2.5", 83),  # 0.8325 → 0.83
        ("standard", {"amount": "0.005"}, "1", 1),  # 0.005 → half up → 0.01
        ("standard", {"amount": "1.5"}, "0", 0),
        ("graduated", GRADUATED, "15", 1700),  # Lago's example: 10 × 0.5 + 10 + 5 × 0.4
        ("graduated", GRADUATED, "10", 1500),  # the first tier exactly: 5 + 10
        ("graduated", GRADUATED, "0", 1000),  # the first tier's flat is due at 0 units
        ("graduated", GRADUATED, "10.5", 1520),  # 5 + 10 + 0.5 × 0.4
        ("volume", VOLUME, "100", 10200),  # all 100 at 1, + 2 flat
        ("volume", VOLUME, "100.2", 5010),  # ceil → 101: the second tier, 100.2 × 0.5
        ("volume", VOLUME, "0", 200),  # the flat is due at 0 units
        ("package", {"amount": "4", "package_size": 4, "free_units": 1}, "9", 800),  # ceil(8/4)×4
        ("package", {"amount": "4", "package_size": 4, "free_units": 10}, "9", 0),
        ("package", {"amount": "5", "package_size": 10}, "10", 500),  # exactly one pack
        ("package", {"amount": "5", "package_size": 10}, "10.1", 1000),  # a started pack
        ("percentage", {"rate": "2.5"}, "1000", 2500),  # 1000 × 2.5 %
        (
            "percentage",
            {"rate": "1", "fixed_amount": "0.3", "free_units_per_total_aggregation": "400"},
            "1000",
            690,  # (1000 − 400) × 1 % + 3 events × 0.3
        ),
        (
            "graduated_percentage",
            {
                "graduated_percentage_ranges": [
                    {"from_value": 0, "to_value": 1000, "rate": "2", "flat_amount": "1"},
                    {"from_value": 1000, "to_value": None, "rate": "1", "flat_amount": "0.5"},
                ]
            },
            "1500",
            2650,  # 1000 × 2 % + 1 + 500 × 1 % + 0.5
        ),
    ],
)
def test_amounts(model: ChargeModel, properties: dict[str, Any], units: str, expected: int) -> None:
    assert cents(model, properties, units, events=3) == expected


def test_percentage_free_events_are_the_earliest_values() -> None:
    properties = {"rate": "2", "fixed_amount": "0.1", "free_units_per_events": 2}
    # 100 and 50 are free: (180 − 150) × 2 % + (4 − 2) × 0.1
    assert cents("percentage", properties, "180", events=4, first=["100", "50"]) == 80


def test_currencies_round_to_their_own_minor_unit() -> None:
    assert cents("standard", {"amount": "0.5"}, "3", currency="JPY") == 2  # 1.5 → 2
    assert cents("standard", {"amount": "0.00005"}, "3", currency="CLF") == 2  # 0.00015 → 0.0002


def test_graduated_amount_details_show_each_tier() -> None:
    properties = parse_properties("graduated", GRADUATED)
    details = charge_amount(properties, Usage(units=Decimal(15), events_count=2), "EUR")
    assert details.amount_details["graduated_ranges"] == [
        {
            "units": "10",
            "from_value": 0,
            "to_value": 10,
            "flat_unit_amount": "10",
            "per_unit_amount": "0.5",
            "per_unit_total_amount": "5.0",
            "total_with_flat_amount": "15.0",
        },
        {
            "units": "5",
            "from_value": 11,
            "to_value": None,
            "flat_unit_amount": "0",
            "per_unit_amount": "0.4",
            "per_unit_total_amount": "2.0",
            "total_with_flat_amount": "2.0",
        },
    ]
    assert details.unit_amount_cents == 113  # 17 / 15 = 1.1333


def test_missing_ranges_are_named_as_lago_names_them() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_properties("graduated", {"graduated_ranges": []})
    assert refused.value.details == {"graduated_ranges": ["missing_graduated_ranges"]}


def test_a_percentage_tier_without_units_costs_nothing() -> None:
    """Unlike graduated and volume tiers, whose first flat amount is due at 0 units."""
    ranges = {
        "graduated_percentage_ranges": [
            {"from_value": 0, "to_value": None, "rate": "1", "flat_amount": "2"}
        ]
    }
    assert cents("graduated_percentage", ranges, "0") == 0
    assert cents("graduated_percentage", ranges, "100") == 300  # 100 × 1 % + 2


@pytest.mark.parametrize(
    ("model", "properties", "field"),
    [
        ("standard", {"amount": "-1"}, "amount"),
        ("standard", {}, "amount"),
        ("standard", {"amount": "abc"}, "amount"),
        ("package", {"amount": "1", "package_size": 0}, "package_size"),
        ("package", {"amount": "1", "package_size": 1, "free_units": -1}, "free_units"),
        ("percentage", {"rate": "-2"}, "rate"),
        (
            "graduated",
            {
                "graduated_ranges": [
                    {"from_value": 1, "to_value": None, "flat_amount": "0", "per_unit_amount": "1"}
                ]
            },
            "graduated_ranges",
        ),
        (
            "volume",
            {
                "volume_ranges": [
                    {"from_value": 0, "to_value": None, "flat_amount": "0", "per_unit_amount": "1"},
                    {
                        "from_value": 10,
                        "to_value": None,
                        "flat_amount": "0",
                        "per_unit_amount": "1",
                    },
                ]
            },
            "volume_ranges",
        ),
        (
            "graduated_percentage",
            {
                "graduated_percentage_ranges": [
                    {"from_value": 0, "to_value": 5, "rate": "1", "flat_amount": "0"}
                ]
            },
            "graduated_percentage_ranges",
        ),
    ],
)
def test_refusals_name_the_property(
    model: ChargeModel, properties: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_properties(model, properties)
    assert refused.value.details == {field: [f"invalid_{field}"]}


def test_properties_round_trip_as_lago_shows_them() -> None:
    shown = properties_as_lago(parse_properties("graduated", GRADUATED))
    assert shown == GRADUATED
    assert parse_properties("graduated", shown) == parse_properties("graduated", GRADUATED)
    assert properties_as_lago(parse_properties("package", {"amount": 4, "package_size": 2})) == {
        "amount": "4",
        "package_size": 2,
        "free_units": 0,
    }
