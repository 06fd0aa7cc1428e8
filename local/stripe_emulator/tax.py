"""Stripe Tax: tax calculations, tax transactions and their reversals, customers' tax
location, and the tax automatic-tax subscriptions put on their invoices.

Stripe Tax knows every jurisdiction's rules; the emulator knows a small fixed table, so
a test can predict every amount:

============================  =======  ==========================================
customer's address            rate     tax
============================  =======  ==========================================
FR                            20%      VAT (France)
DE                            19%      VAT (Germany)
NL                            21%      VAT (Netherlands)
IE                            23%      VAT (Ireland)
GB                            20%      VAT (United Kingdom)
US, ZIP 900xx-961xx           7.25%    sales tax (California, state rate only)
US, ZIP 100xx-149xx           4%       sales tax (New York, state rate only)
US, ZIP 750xx-799xx           6.25%    sales tax (Texas, state rate only)
US, ZIP 970xx-979xx           0%       none: Oregon has no sales tax
                                       (``not_subject_to_tax``)
============================  =======  ==========================================

An address is *locatable* when its country is in the table and, for the US, its
``postal_code`` is a 5-digit ZIP (ZIP+4 accepted) in one of the ranges; the state comes
from the ZIP, whatever ``state`` says. Elsewhere the country alone is enough, as it is
for Stripe Tax in most countries. Any other address (none, no country, a country not in
the table, a US address without a known ZIP) is Stripe's 400
``customer_tax_location_invalid``. The account counts as registered everywhere in the
table (real Stripe charges nothing, ``not_collecting``, where it is not).

Tax is computed per line and rounded half up to the currency's minor unit: exclusive
tax is ``amount × rate``, inclusive tax the part of the amount that is tax,
``amount × rate / (1 + rate)``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aiohttp import web
from localstripe.resources import Customer, StripeObject, random_id, store

from .catalog import CatalogProduct
from .common import (
    Routes,
    as_dict,
    as_int,
    find,
    read_params,
    reject_unknown,
    require,
    updated_metadata,
)
from .errors import StripeApiError, json_response

CALCULATION_LIFETIME_S = 90 * 24 * 3600
"""Stripe keeps a calculation usable for a transaction for 90 days."""
DEFAULT_TAX_CODE = "txcd_10000000"
"""Stripe's default product tax code (general electronically supplied services)."""
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
TAX_BEHAVIORS = ("exclusive", "inclusive")
TAXABILITY_OVERRIDES = ("none", "customer_exempt", "reverse_charge")


@dataclasses.dataclass(frozen=True)
class Jurisdiction:
    country: str
    state: str | None
    display_name: str
    level: str
    """``country`` for a national VAT, ``state`` for a US state's sales tax."""


@dataclasses.dataclass(frozen=True)
class TaxRule:
    """What the table says for one place: its jurisdiction and rate."""

    jurisdiction: Jurisdiction
    percentage_decimal: str
    tax_type: str
    display_name: str

    @property
    def percentage(self) -> Decimal:
        return Decimal(self.percentage_decimal)


def _vat(country: str, name: str, percentage: str) -> TaxRule:
    return TaxRule(Jurisdiction(country, None, name, "country"), percentage, "vat", "VAT")


def _sales_tax(state: str, name: str, percentage: str) -> TaxRule:
    return TaxRule(Jurisdiction("US", state, name, "state"), percentage, "sales_tax", "Sales Tax")


_COUNTRIES = {
    rule.jurisdiction.country: rule
    for rule in (
        _vat("FR", "France", "20.0"),
        _vat("DE", "Germany", "19.0"),
        _vat("NL", "Netherlands", "21.0"),
        _vat("IE", "Ireland", "23.0"),
        _vat("GB", "United Kingdom", "20.0"),
    )
}
# US states by the first three digits of the ZIP code.
_US_STATES = (
    (range(900, 962), _sales_tax("CA", "California", "7.25")),
    (range(100, 150), _sales_tax("NY", "New York", "4.0")),
    (range(750, 800), _sales_tax("TX", "Texas", "6.25")),
    (range(970, 980), _sales_tax("OR", "Oregon", "0.0")),
)
_ZIP = re.compile(r"^(\d{3})\d{2}(-\d{4})?$")


@dataclasses.dataclass(frozen=True)
class TaxOutcome:
    """The tax on one amount at one address."""

    amount: int
    """The tax, in the currency's minor unit."""
    taxable_amount: int
    """What the tax is levied on (for an inclusive amount, the amount less its tax)."""
    inclusive: bool
    rule: TaxRule
    taxability_reason: str

    @property
    def jurisdiction(self) -> Jurisdiction:
        return self.rule.jurisdiction

    @property
    def percentage_decimal(self) -> str:
        """The rate actually applied: 0 when an override or the place exempts the sale."""
        return self.rule.percentage_decimal if self.taxability_reason == "standard_rated" else "0.0"

    @property
    def tax_rate_details(self) -> dict[str, Any]:
        """Stripe's ``tax_rate_details`` of a calculation's ``tax_breakdown``."""
        return {
            "country": self.jurisdiction.country,
            "flat_amount": None,
            "percentage_decimal": self.percentage_decimal,
            "rate_type": "percentage",
            "state": self.jurisdiction.state,
            "tax_type": self.rule.tax_type,
        }


def location_invalid(param: str) -> StripeApiError:
    return StripeApiError(
        400,
        "The customer's location isn't recognized, so tax can't be calculated. Provide an "
        "address with a supported country and, in the US, a valid ZIP code.",
        code="customer_tax_location_invalid",
        param=param,
        doc_url="https://stripe.com/docs/error-codes/customer-tax-location-invalid",
    )


def locate(address: dict[str, Any] | None, param: str = "address") -> TaxRule:
    """The table's rule for ``address``, else Stripe's ``customer_tax_location_invalid``
    naming the faulty field under ``param`` (``customer_details[address][postal_code]``)."""
    if not address:
        raise location_invalid(param)
    country = str(address.get("country") or "").upper()
    if country == "US":
        match = _ZIP.match(str(address.get("postal_code") or "").strip())
        prefix = int(match.group(1)) if match else -1
        rule = next((rule for zips, rule in _US_STATES if prefix in zips), None)
        if rule is None:
            raise location_invalid(f"{param}[postal_code]")
        return rule
    if country not in _COUNTRIES:
        raise location_invalid(f"{param}[country]")
    return _COUNTRIES[country]


def is_locatable(address: dict[str, Any] | None) -> bool:
    try:
        locate(address)
    except StripeApiError:
        return False
    return True


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_for_address(
    address: dict[str, Any] | None,
    amount: int,
    *,
    tax_behavior: str = "exclusive",
    taxability_override: str = "none",
    param: str = "address",
) -> TaxOutcome:
    """The tax on ``amount`` (minor units; tax included when ``tax_behavior`` is
    ``inclusive``) for a customer at ``address``, per the module's table.

    ``taxability_override`` is Stripe's ``customer_exempt`` or ``reverse_charge`` (no
    tax, for that reason) or ``none``. An address the table cannot place is Stripe's
    400 ``customer_tax_location_invalid``, its ``param`` under ``param``.
    """
    rule = locate(address, param)
    inclusive = tax_behavior == "inclusive"
    if taxability_override != "none":
        reason = taxability_override
    elif rule.percentage == 0:
        reason = "not_subject_to_tax"
    else:
        reason = "standard_rated"
    if reason != "standard_rated":
        return TaxOutcome(0, 0, inclusive, rule, reason)
    rate = rule.percentage
    if inclusive:
        tax = _half_up(amount * rate / (100 + rate))
        return TaxOutcome(tax, amount - tax, True, rule, reason)
    return TaxOutcome(_half_up(amount * rate / 100), amount, False, rule, reason)


def customer_address(customer_id: str) -> dict[str, Any] | None:
    customer = store.get(f"customer:{customer_id}")
    return getattr(customer, "address", None) if customer is not None else None


def customer_tax(address: dict[str, Any] | None) -> dict[str, Any]:
    """Stripe's ``customer.tax`` (returned with ``expand[]=tax``): whether automatic tax
    can place the customer, and where, from the billing address."""
    try:
        rule = locate(address)
    except StripeApiError:
        return {
            "automatic_tax": "unrecognized_location",
            "ip_address": None,
            "location": None,
            "provider": "stripe",
        }
    return {
        "automatic_tax": "supported",
        "ip_address": None,
        "location": {
            "country": rule.jurisdiction.country,
            "source": "billing_address",
            "state": rule.jurisdiction.state,
        },
        "provider": "stripe",
    }


# -- automatic tax on invoices ---------------------------------------------------------


class AutomaticTaxRate(StripeObject):
    """The tax rate Stripe Tax makes for a jurisdiction it collects in; invoice lines
    name it in ``taxes[].tax_rate_details.tax_rate`` (``GET /v1/tax_rates/{id}``)."""

    object = "tax_rate"
    _id_prefix = "txr_"

    def __init__(self, rule: TaxRule):
        super().__init__()
        self.active = True
        self.country = rule.jurisdiction.country
        self.description = None
        self.display_name = rule.display_name
        self.effective_percentage = float(rule.percentage)
        self.flat_amount = None
        self.inclusive = False
        self.jurisdiction = rule.jurisdiction.state or rule.jurisdiction.country
        self.jurisdiction_level = rule.jurisdiction.level
        self.metadata: dict[str, str] = {}
        self.percentage = float(rule.percentage)
        self.rate_type = "percentage"
        self.state = rule.jurisdiction.state
        self.tax_type = rule.tax_type
        self._rule = rule


def _tax_rate_for(rule: TaxRule) -> AutomaticTaxRate:
    """The account's rate for ``rule``, made the first time it is needed."""
    for key, obj in store.items():
        if key.startswith("tax_rate:") and getattr(obj, "_rule", None) == rule:
            return obj
    return AutomaticTaxRate(rule)


DISABLED_INVOICE_TAX = {
    "enabled": False,
    "disabled_reason": None,
    "liability": None,
    "provider": None,
    "status": None,
}


def tax_invoice_lines(lines: list[dict[str, Any]], customer_id: str) -> dict[str, Any]:
    """Put automatic tax on an invoice's lines (exclusive, from the customer's address
    now) and return the invoice's ``automatic_tax``. A customer the table cannot place
    leaves the lines untaxed and the status ``requires_location_inputs``, as Stripe
    leaves an invoice it cannot finalize."""
    enabled = {"enabled": True, "disabled_reason": None, "liability": {"type": "self"}}
    address = customer_address(customer_id)
    if not is_locatable(address):
        return {**enabled, "provider": "stripe", "status": "requires_location_inputs"}
    for line in lines:
        # Tax is on what is left after the line's discounts.
        net = int(line["amount"]) - sum(int(d["amount"]) for d in line.get("discount_amounts", []))
        outcome = tax_for_address(address, net)
        line["taxes"] = [
            {
                "amount": outcome.amount,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": _tax_rate_for(outcome.rule).id},
                "taxability_reason": outcome.taxability_reason,
                "taxable_amount": outcome.taxable_amount,
                "type": "tax_rate_details",
            }
        ]
    return {**enabled, "provider": "stripe", "status": "complete"}


def total_taxes(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An invoice's ``total_taxes``: its lines' taxes summed per tax rate and reason."""
    totals: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in lines:
        for tax in line.get("taxes", []):
            rate = tax["tax_rate_details"]["tax_rate"]
            key = (rate, tax["taxability_reason"], tax["tax_behavior"])
            total = totals.setdefault(key, {**tax, "amount": 0, "taxable_amount": 0})
            total["amount"] += tax["amount"]
            total["taxable_amount"] += tax["taxable_amount"]
    return list(totals.values())


# -- tax calculations ------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def _full_address(address: dict[str, Any] | None) -> dict[str, Any] | None:
    """An address with every field Stripe prints (null where not given)."""
    if address is None:
        return None
    return {name: address.get(name) for name in ADDRESS_FIELDS}


def _listing(items: list[dict[str, Any]], url: str, params: dict[str, Any]) -> dict[str, Any]:
    """Stripe's list object over ``items``, paged by ``limit`` and ``starting_after``."""
    limit = as_int(params.get("limit", 10), "limit", 1)
    after = params.get("starting_after")
    start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0)
    return {
        "object": "list",
        "data": items[start : start + limit],
        "has_more": len(items) > start + limit,
        "url": url,
    }


def _expand(params: dict[str, Any]) -> list[str]:
    expand = params.get("expand", [])
    return [path for path in expand if isinstance(path, str)] if isinstance(expand, list) else []


class TaxCalculation(StripeObject):
    object = "tax.calculation"
    _id_prefix = "taxcalc_"

    def __init__(
        self,
        currency: str,
        customer: str | None,
        customer_details: dict[str, Any],
        line_items: list[dict[str, Any]],
        outcomes: list[TaxOutcome],
        tax_date: int,
        now: int,
    ):
        super().__init__(id=self._id_prefix + random_id(24))
        del self.created  # Stripe's calculations carry no creation time
        exclusive = sum(o.amount for o in outcomes if not o.inclusive)
        self.amount_total = sum(int(item["amount"]) for item in line_items) + exclusive
        self.currency = currency
        self.customer = customer
        self.customer_details = customer_details
        self.expires_at = now + CALCULATION_LIFETIME_S
        self.line_items = None
        self.ship_from_details = None
        self.shipping_cost = None
        self.tax_amount_exclusive = exclusive
        self.tax_amount_inclusive = sum(o.amount for o in outcomes if o.inclusive)
        self.tax_breakdown = _breakdown(outcomes)
        self.tax_date = tax_date
        self._line_items = line_items

    def _exported(self, expand: list[str]) -> dict[str, Any]:
        exported: dict[str, Any] = self._export()
        if "line_items" in expand:
            url = f"/v1/tax/calculations/{self.id}/line_items"
            exported["line_items"] = _listing(self._line_items, url, {"limit": 100})
        return exported


def _breakdown(outcomes: list[TaxOutcome]) -> list[dict[str, Any]]:
    """Stripe's ``tax_breakdown``: tax and taxable amounts summed per rate, behaviour
    and reason."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for outcome in outcomes:
        details = outcome.tax_rate_details
        key = (*details.values(), outcome.inclusive, outcome.taxability_reason)
        group = groups.setdefault(
            key,
            {
                "amount": 0,
                "inclusive": outcome.inclusive,
                "tax_rate_details": details,
                "taxability_reason": outcome.taxability_reason,
                "taxable_amount": 0,
            },
        )
        group["amount"] += outcome.amount
        group["taxable_amount"] += outcome.taxable_amount
    return list(groups.values())


def _customer_details(params: dict[str, Any]) -> tuple[str | None, dict[str, Any], str]:
    """The customer (if named), Stripe's ``customer_details`` and the parameter naming
    the address, from ``customer`` and/or ``customer_details``."""
    customer_id = params.get("customer")
    raw = as_dict(params.get("customer_details", {}), "customer_details")
    reject_unknown(
        raw,
        ("address", "address_source", "ip_address", "taxability_override", "tax_ids"),
        "customer_details",
    )
    if customer_id is None and not raw:
        raise StripeApiError(
            400,
            "You must specify either `customer` or `customer_details` to calculate tax.",
            param="customer_details",
        )
    override = raw.get("taxability_override", "none")
    if override not in TAXABILITY_OVERRIDES:
        param = "customer_details[taxability_override]"
        raise StripeApiError(
            400, f"Invalid {param}: must be one of {', '.join(TAXABILITY_OVERRIDES)}", param=param
        )
    if "address" in raw:
        address = as_dict(raw["address"], "customer_details[address]")
        reject_unknown(address, ADDRESS_FIELDS, "customer_details[address]")
        source = require(raw, "address_source", "customer_details[address_source]")
        if source not in ("billing", "shipping"):
            param = "customer_details[address_source]"
            raise StripeApiError(
                400, f"Invalid {param}: must be one of billing or shipping", param=param
            )
        param = "customer_details[address]"
    elif customer_id is not None:
        customer = find(Customer, str(customer_id), "customer")
        address, source, param = customer.address, "billing", "customer"
    else:
        address, source, param = None, None, "customer_details[address]"
    details = {
        "address": _full_address(address),
        "address_source": source,
        "ip_address": raw.get("ip_address"),
        "tax_ids": [],
        "taxability_override": override,
    }
    return (None if customer_id is None else str(customer_id)), details, param


def _calculation_line(index: int, raw: Any, seen: set[str]) -> dict[str, Any]:
    where = f"line_items[{index}]"
    item = as_dict(raw, where)
    reject_unknown(
        item, ("amount", "reference", "quantity", "tax_behavior", "tax_code", "product"), where
    )
    amount = as_int(require(item, "amount", f"{where}[amount]"), f"{where}[amount]")
    reference = str(require(item, "reference", f"{where}[reference]"))
    if reference in seen:
        raise StripeApiError(
            400,
            f"Line item references must be unique within a calculation; '{reference}' is "
            "used more than once.",
            param=f"{where}[reference]",
        )
    seen.add(reference)
    behavior = item.get("tax_behavior", "exclusive")
    if behavior not in TAX_BEHAVIORS:
        param = f"{where}[tax_behavior]"
        raise StripeApiError(
            400, f"Invalid {param}: must be one of exclusive or inclusive", param=param
        )
    product = None
    if "product" in item:
        product = find(CatalogProduct, str(item["product"]), f"{where}[product]")
    tax_code = item.get("tax_code") or getattr(product, "tax_code", None) or DEFAULT_TAX_CODE
    return {
        "id": "tax_li_" + random_id(14),
        "object": "tax.calculation_line_item",
        "amount": amount,
        "amount_tax": 0,
        "livemode": False,
        "metadata": None,
        "product": None if product is None else product.id,
        "quantity": as_int(item.get("quantity", 1), f"{where}[quantity]", 1),
        "reference": reference,
        "tax_behavior": behavior,
        "tax_code": tax_code,
    }


async def create_calculation(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(
        params, ("currency", "customer", "customer_details", "line_items", "tax_date", "expand")
    )
    expand = _expand(params)
    currency = str(require(params, "currency")).lower()
    customer, details, address_param = _customer_details(params)
    raw_items = require(params, "line_items")
    if not isinstance(raw_items, list):
        raise StripeApiError(400, "Invalid array: line_items", param="line_items")
    seen: set[str] = set()
    line_items = [_calculation_line(index, raw, seen) for index, raw in enumerate(raw_items)]
    now = _now()
    tax_date = as_int(params.get("tax_date", now), "tax_date")
    outcomes = [
        tax_for_address(
            details["address"],
            item["amount"],
            tax_behavior=item["tax_behavior"],
            taxability_override=details["taxability_override"],
            param=address_param,
        )
        for item in line_items
    ]
    for item, outcome in zip(line_items, outcomes, strict=True):
        item["amount_tax"] = outcome.amount
    calculation = TaxCalculation(currency, customer, details, line_items, outcomes, tax_date, now)
    return json_response(calculation._exported(expand))


async def retrieve_calculation(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(params, ("expand",))
    calculation = find(TaxCalculation, request.match_info["id"])
    return json_response(calculation._exported(_expand(params)))


async def calculation_line_items(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(params, ("limit", "starting_after"))
    calculation = find(TaxCalculation, request.match_info["id"])
    url = f"/v1/tax/calculations/{calculation.id}/line_items"
    return json_response(_listing(calculation._line_items, url, params))


# -- tax transactions ------------------------------------------------------------------


class TaxTransaction(StripeObject):
    object = "tax.transaction"
    _id_prefix = "tax_"

    def __init__(
        self,
        origin: TaxCalculation | TaxTransaction,
        line_items: list[dict[str, Any]],
        reference: str,
        metadata: dict[str, str],
        posted_at: int,
    ):
        """A record of ``origin``: the calculation whose tax was collected, or the
        transaction a reversal gives (some of) back."""
        super().__init__(id=self._id_prefix + random_id(24))
        reversing = isinstance(origin, TaxTransaction)
        self.currency: str = origin.currency
        self.customer: str | None = origin.customer
        self.customer_details: dict[str, Any] = origin.customer_details
        self.line_items = None
        self.metadata = metadata
        self.posted_at = posted_at
        self.reference = reference
        self.reversal = {"original_transaction": origin.id} if reversing else None
        self.ship_from_details = None
        self.shipping_cost = None
        self.tax_date: int = origin.tax_date
        self.type = "reversal" if reversing else "transaction"
        self._line_items = line_items

    def _exported(self, expand: list[str]) -> dict[str, Any]:
        exported: dict[str, Any] = self._export()
        if "line_items" in expand:
            url = f"/v1/tax/transactions/{self.id}/line_items"
            exported["line_items"] = _listing(self._line_items, url, {"limit": 100})
        return exported


async def create_transaction(request: web.Request) -> web.Response:
    """A transaction recording a calculation's tax (Stripe's ``create_from_calculation``):
    once per ``reference`` in the account, and only while the calculation lasts."""
    params = await read_params(request)
    reject_unknown(params, ("calculation", "reference", "metadata", "posted_at", "expand"))
    calculation = find(TaxCalculation, str(require(params, "calculation")), "calculation")
    reference = str(require(params, "reference"))
    now = _now()
    if calculation.expires_at <= now:
        raise StripeApiError(
            400,
            f"The tax calculation {calculation.id} has expired: a transaction can only be "
            "created from a calculation within 90 days.",
            param="calculation",
        )
    _unused_reference(reference)
    posted_at = as_int(params.get("posted_at", now), "posted_at")
    line_items = [_transaction_line(item) for item in calculation._line_items]
    transaction = TaxTransaction(
        calculation,
        line_items,
        reference,
        updated_metadata({}, params.get("metadata", {})),
        posted_at,
    )
    return json_response(transaction._exported(_expand(params)))


def _unused_reference(reference: str) -> None:
    """Stripe's rule: a reference names one transaction (reversals included) per account."""
    if len(reference) > 500:
        raise StripeApiError(
            400, "Invalid reference: must be at most 500 characters", param="reference"
        )
    if any(
        key.startswith("tax.transaction:") and obj.reference == reference
        for key, obj in store.items()
    ):
        raise StripeApiError(
            400,
            f"A tax transaction with reference '{reference}' already exists. References "
            "must be unique across all transactions.",
            param="reference",
        )


def _transaction_line(
    item: dict[str, Any], reversed_item: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A transaction's line from a calculation's line, or (``reversed_item`` given) a
    reversal's line giving back ``item``'s amounts of ``reversed_item``."""
    return {
        **item,
        "id": "tax_li_" + random_id(14),
        "object": "tax.transaction_line_item",
        "reversal": None if reversed_item is None else {"original_line_item": reversed_item["id"]},
        "type": "transaction" if reversed_item is None else "reversal",
    }


async def create_reversal(request: web.Request) -> web.Response:
    """A reversal giving back all (``mode=full``) or some (``mode=partial``, per line) of
    a transaction's amounts and tax, as for a refund. A line is never given back more
    than it had; a full reversal is only for a transaction not reversed yet."""
    params = await read_params(request)
    reject_unknown(
        params, ("mode", "original_transaction", "reference", "line_items", "metadata", "expand")
    )
    mode = require(params, "mode")
    if mode not in ("full", "partial"):
        raise StripeApiError(400, "Invalid mode: must be one of full or partial", param="mode")
    original = find(
        TaxTransaction, str(require(params, "original_transaction")), "original_transaction"
    )
    if original.type != "transaction":
        raise StripeApiError(
            400, "A reversal can't itself be reversed.", param="original_transaction"
        )
    reference = str(require(params, "reference"))
    _unused_reference(reference)
    given_back = _given_back(original)
    if mode == "full":
        if "line_items" in params:
            raise StripeApiError(
                400, "line_items can only be given with mode=partial.", param="line_items"
            )
        if given_back:
            raise StripeApiError(
                400,
                f"The transaction {original.id} has already been reversed in part; reverse "
                "the rest with mode=partial.",
                param="mode",
            )
        line_items = [
            _transaction_line(
                {**item, "amount": -item["amount"], "amount_tax": -item["amount_tax"]}, item
            )
            for item in original._line_items
        ]
    else:
        raw_items = require(params, "line_items")
        if not isinstance(raw_items, list):
            raise StripeApiError(400, "Invalid array: line_items", param="line_items")
        line_items = [
            _reversal_line(index, raw, original, given_back) for index, raw in enumerate(raw_items)
        ]
    reversal = TaxTransaction(
        original,
        line_items,
        reference,
        updated_metadata({}, params.get("metadata", {})),
        _now(),
    )
    return json_response(reversal._exported(_expand(params)))


def _given_back(original: TaxTransaction) -> dict[str, tuple[int, int]]:
    """What earlier reversals of ``original`` gave back, as (amount, tax) per line id."""
    totals: dict[str, tuple[int, int]] = {}
    for key, obj in store.items():
        if not key.startswith("tax.transaction:") or obj.reversal is None:
            continue
        if obj.reversal["original_transaction"] != original.id:
            continue
        for item in obj._line_items:
            line_id = item["reversal"]["original_line_item"]
            amount, tax = totals.get(line_id, (0, 0))
            totals[line_id] = (amount - item["amount"], tax - item["amount_tax"])
    return totals


def _reversal_line(
    index: int, raw: Any, original: TaxTransaction, given_back: dict[str, tuple[int, int]]
) -> dict[str, Any]:
    """One line of a partial reversal: negative amounts within what the line has left."""
    where = f"line_items[{index}]"
    item = as_dict(raw, where)
    reject_unknown(
        item, ("original_line_item", "reference", "amount", "amount_tax", "quantity"), where
    )
    line_id = require(item, "original_line_item", f"{where}[original_line_item]")
    reversed_item = next((li for li in original._line_items if li["id"] == line_id), None)
    if reversed_item is None:
        raise StripeApiError(
            400,
            f"The line item {line_id} is not part of transaction {original.id}.",
            param=f"{where}[original_line_item]",
        )
    returned_amount, returned_tax = given_back.get(line_id, (0, 0))
    amounts = {}
    for field, left in (
        ("amount", reversed_item["amount"] - returned_amount),
        ("amount_tax", reversed_item["amount_tax"] - returned_tax),
    ):
        param = f"{where}[{field}]"
        value = as_int(require(item, field, param), param, -left)
        if value > 0:
            raise StripeApiError(400, f"Invalid {param}: must be negative or zero", param=param)
        amounts[field] = value
    return _transaction_line(
        {
            **reversed_item,
            **amounts,
            "quantity": as_int(
                item.get("quantity", reversed_item["quantity"]), f"{where}[quantity]", 1
            ),
            "reference": str(require(item, "reference", f"{where}[reference]")),
        },
        reversed_item,
    )


async def retrieve_transaction(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(params, ("expand",))
    transaction = find(TaxTransaction, request.match_info["id"])
    return json_response(transaction._exported(_expand(params)))


async def transaction_line_items(request: web.Request) -> web.Response:
    params = await read_params(request)
    reject_unknown(params, ("limit", "starting_after"))
    transaction = find(TaxTransaction, request.match_info["id"])
    url = f"/v1/tax/transactions/{transaction.id}/line_items"
    return json_response(_listing(transaction._line_items, url, params))


ROUTES: Routes = [
    ("POST", "/v1/tax/calculations", create_calculation),
    ("GET", "/v1/tax/calculations/{id}", retrieve_calculation),
    ("GET", "/v1/tax/calculations/{id}/line_items", calculation_line_items),
    ("POST", "/v1/tax/transactions/create_from_calculation", create_transaction),
    ("POST", "/v1/tax/transactions/create_reversal", create_reversal),
    ("GET", "/v1/tax/transactions/{id}", retrieve_transaction),
    ("GET", "/v1/tax/transactions/{id}/line_items", transaction_line_items),
]
