"""Money: the currencies Billow accepts and the amounts it can bill. Amounts are integer
minor units (Lago's ``amount_cents``), never floats."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

# -- currencies ------------------------------------------------------------------------

_TWO_DECIMAL_CURRENCIES = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CNY",
        "COP",
        "CRC",
        "CVE",
        "CZK",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HRK",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "JMD",
        "KES",
        "KGS",
        "KHR",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRO",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "SAR",
        "SBD",
        "SCR",
        "SEK",
        "SGD",
        "SHP",
        "SLL",
        "SOS",
        "SRD",
        "STD",
        "SZL",
        "THB",
        "TJS",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "USD",
        "UYU",
        "UZS",
        "WST",
        "XCD",
        "YER",
        "ZAR",
        "ZMW",
    ]
)
_OTHER_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    "CLF": 4,
}
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMAL_CURRENCIES, 2),
    **_OTHER_EXPONENTS,
}
"""The currencies Lago accepts, each with its ISO 4217 minor-unit exponent. Neither Python
nor Billow's dependencies ship ISO 4217 with exponents (pydantic-extra-types would add
pycountry, which has no exponents), so the table lives here."""


def currency_exponent(code: str) -> int:
    """Decimal places of ``code``'s minor unit: ``amount_cents`` counts 10**-exponent units.

    This is ISO 4217, which Lago follows. Stripe differs for a few currencies (it treats
    MGA as zero-decimal and wants ISK, HUF, TWD and UGX amounts in hundredths), so a
    Stripe amount must be derived from this, never assumed equal to ``amount_cents``."""
    return CURRENCY_EXPONENTS[code]


def _currency(value: str) -> str:
    if value not in CURRENCY_EXPONENTS:
        raise ValueError("value_is_invalid")
    return value


Currency = Annotated[str, AfterValidator(_currency)]
"""An ISO 4217 code from Lago's list, in capitals: the one currency type of every input
(customers, plans, add-ons, coupons, one-off invoices, pre-authorizations)."""

# -- amounts ---------------------------------------------------------------------------

MAX_CENTS = 2**63 - 1
"""Lago keeps amounts in 64-bit integers."""

Cents = Annotated[int, Field(ge=0, le=MAX_CENTS)]

STRIPE_MAX_AMOUNT = 99_999_999
"""The largest amount one Stripe charge takes. Stripe's API reference gives a
PaymentIntent's ``amount`` "up to eight digits" of the currency's minor unit (99999999 is
USD 999,999.99); its currencies guide (docs.stripe.com/currencies, "Minimum and maximum
charge amounts") has the per-currency details and exceptions. Billow holds every currency
to the general eight digits rather than tracking those exceptions."""


def stripe_can_charge(amount_cents: int) -> bool:
    """Whether one Stripe charge can collect ``amount_cents`` (Stripe refuses larger ones)."""
    return amount_cents <= STRIPE_MAX_AMOUNT


ChargeableCents = Annotated[int, Field(ge=0, le=STRIPE_MAX_AMOUNT)]
"""A price Stripe can charge. Plans and add-ons are priced in it: Lago lets a price go up
to :data:`MAX_CENTS` because Lago can bill without a payment provider, but Billow charges
every invoice above zero through Stripe, so a plan or add-on priced beyond Stripe's
maximum could only make invoices that fail every attempt and every dunning retry. This
bounds the price, not the invoice: taxes, units and several fees can still add up past
it, which is why a one-off invoice's total is checked again (see
``billow.services.invoicing.issue_invoice``)."""

HoldableCents = Annotated[int, Field(gt=0, le=STRIPE_MAX_AMOUNT)]
"""A pre-authorization amount: something to hold on the card, so above zero, and no more
than Stripe can charge."""
