"""A customer's payment methods: Billow's copy of what Stripe holds for them."""

from __future__ import annotations

from billow.adapters.dynamodb import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, stable_id, utcnow
from billow.domain.customers import Customer, PaymentMethod
from billow.domain.errors import NotFound
from billow.domain.integrations import StripeConnection
from billow.ports import CardDetails
from billow.services.lookups import get_customer
from billow.services.payments import stage_awaiting_invoices


def list_payment_methods(
    deps: Dependencies, organization_id: str, external_id: str
) -> list[PaymentMethod]:
    return deps.store.list_payment_methods(get_customer(deps, organization_id, external_id))


def _find(methods: list[PaymentMethod], lago_id: str) -> PaymentMethod:
    for method in methods:
        if method.lago_id == lago_id:
            return method
    raise NotFound("payment_method")


def _with_default(methods: list[PaymentMethod], default_id: str | None) -> list[PaymentMethod]:
    return [
        method.model_copy(update={"is_default": method.lago_id == default_id}) for method in methods
    ]


def set_as_default(
    deps: Dependencies, organization_id: str, external_id: str, lago_id: str
) -> PaymentMethod:
    customer = get_customer(deps, organization_id, external_id)
    before = deps.store.list_payment_methods(customer)
    _find(before, lago_id)
    after = _with_default(before, lago_id)
    transaction = Transaction()
    deps.store.replace_payment_methods(transaction, before, after)
    if transaction.actions:
        deps.store.commit(transaction)
    return _find(after, lago_id)


def delete_payment_method(
    deps: Dependencies, organization_id: str, external_id: str, lago_id: str
) -> PaymentMethod:
    customer = get_customer(deps, organization_id, external_id)
    before = deps.store.list_payment_methods(customer)
    removed = _find(before, lago_id)
    transaction = Transaction()
    deps.store.replace_payment_methods(
        transaction, before, [method for method in before if method.lago_id != lago_id]
    )
    deps.store.commit(transaction)
    return removed


def stage_provider_method(
    deps: Dependencies,
    transaction: Transaction,
    connection: StripeConnection,
    customer: Customer,
    card: CardDetails,
    make_default: bool,
) -> PaymentMethod:
    """Stage adding (or refreshing) a Stripe payment method. Its lago_id derives from the Stripe
    id, so two deliveries of the same fact (checkout and setup intent) make one method."""
    before = deps.store.list_payment_methods(customer)
    lago_id = stable_id("payment_method", customer.organization_id, card.provider_method_id)
    existing = next((method for method in before if method.lago_id == lago_id), None)
    method = PaymentMethod(
        lago_id=lago_id,
        organization_id=customer.organization_id,
        external_customer_id=customer.external_id,
        customer_lago_id=customer.lago_id,
        is_default=existing.is_default if existing else False,
        payment_provider_code=connection.code,
        payment_provider_name=connection.name,
        provider_method_id=card.provider_method_id,
        provider_method_type=card.type,
        details=card.model_dump(exclude={"provider_method_id", "type", "created"}),
        created_at=existing.created_at if existing else iso(utcnow()),
    )
    after = [m for m in before if m.lago_id != lago_id] + [method]
    if make_default or not any(m.is_default for m in after):
        after = _with_default(after, lago_id)
    deps.store.replace_payment_methods(transaction, before, after)
    transaction.publish(stage_awaiting_invoices(deps, transaction, customer))
    return _find(after, lago_id)


def stage_provider_method_removal(
    deps: Dependencies, transaction: Transaction, customer: Customer, provider_method_id: str
) -> None:
    before = deps.store.list_payment_methods(customer)
    after = [m for m in before if m.provider_method_id != provider_method_id]
    deps.store.replace_payment_methods(transaction, before, after)
