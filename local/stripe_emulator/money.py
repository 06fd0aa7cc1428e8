"""Amounts the way Stripe counts and prints them in its error messages."""

from __future__ import annotations

# Currencies whose amounts Stripe counts in whole units, not cents.
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
# Stripe's smallest charge per settlement currency, in the currency's minor unit; the
# usual 50 for currencies not listed. Billow maps the resulting ``amount_too_small``.
_MINIMUM_CHARGE = {
    "aed": 200,
    "bgn": 100,
    "czk": 1500,
    "dkk": 250,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "thb": 1000,
}
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def minimum_charge(currency: str) -> int:
    return _MINIMUM_CHARGE.get(currency.lower(), 50)


def display(amount: int, currency: str) -> str:
    """``€0.50``, ``$12.00``, ``¥50``, ``CHF 3.00``: the amount as Stripe's messages show it."""
    currency = currency.lower()
    symbol = _SYMBOLS.get(currency, currency.upper() + " ")
    if currency in ZERO_DECIMAL:
        return f"{symbol}{amount}"
    return f"{symbol}{amount // 100}.{amount % 100:02d}"


def page_amount(amount: int, currency: str) -> str:
    """``25.00 EUR``: the amount as the hosted checkout page shows it."""
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"
