"""Finding what a caller names, within its organization, or answering 404."""

from __future__ import annotations

from collections.abc import Iterable

from billow.composition import Dependencies
from billow.domain.catalog import Plan, Tax
from billow.domain.customers import Customer
from billow.domain.errors import NotFound
from billow.domain.organizations import Organization
from billow.domain.subscriptions import PaymentMethodChoice, Subscription


def get_organization(deps: Dependencies, organization_id: str) -> Organization:
    organization = deps.store.organizations.get(organization_id)
    if organization is None:
        raise NotFound("organization")
    return organization


def get_plan(deps: Dependencies, organization_id: str, code: str) -> Plan:
    plan = deps.store.plans.get(organization_id, code)
    if plan is None:
        raise NotFound("plan")
    return plan


def billing_context(
    deps: Dependencies, organization_id: str, sub: Subscription | None
) -> tuple[Plan, Organization, Customer] | None:
    """What billing a subscription needs besides it: its plan, organization and customer
    (None when the subscription or any of them is gone)."""
    if sub is None:
        return None
    plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
    organization = deps.store.organizations.get(organization_id)
    customer = deps.store.customers.get(organization_id, sub.external_customer_id)
    if plan is None or organization is None or customer is None:
        return None
    return plan, organization, customer


def get_customer(deps: Dependencies, organization_id: str, external_id: str) -> Customer:
    customer = deps.store.customers.get(organization_id, external_id)
    if customer is None:
        raise NotFound("customer")
    return customer


def check_payment_method(
    deps: Dependencies, customer: Customer, choice: PaymentMethodChoice | None
) -> None:
    """A payment method named on a subscription or invoice must be one of the customer's."""
    if choice is None or choice.payment_method_type == "manual" or not choice.payment_method_id:
        return
    if not any(
        method.lago_id == choice.payment_method_id
        for method in deps.store.payment_methods.list_for(customer)
    ):
        raise NotFound("payment_method")


def require_taxes(
    deps: Dependencies, organization_id: str, codes: Iterable[str] | None
) -> list[Tax]:
    """The taxes named, once each; any unknown code is Lago's 404 ``tax_not_found``."""
    wanted = list(dict.fromkeys(codes or []))
    found = deps.store.taxes.get_many(organization_id, wanted)
    if len(found) != len(wanted):
        raise NotFound("tax")
    return found
