"""Pre-authorization: holding an amount on the customer's card before subscribing."""

from __future__ import annotations

from billow.composition import Dependencies
from billow.domain.clock import stable_id
from billow.domain.customers import Customer
from billow.domain.errors import ValidationFailed
from billow.domain.subscriptions import Authorization, PaymentMethodChoice
from billow.services.stripe_connection import stripe_account
from billow.services.subscriptions.requests import AuthorizationInput


def authorize(
    deps: Dependencies,
    customer: Customer,
    choice: PaymentMethodChoice | None,
    request: AuthorizationInput,
    purpose: str,
) -> Authorization:
    """Hold the amount on the card, then release it at once. Any refusal aborts the caller
    before it writes anything (a 422 with Stripe's reason)."""
    account = stripe_account(deps, customer)
    if account is None or not customer.stripe_customer_id:
        raise ValidationFailed(
            {"authorization": ["customer_not_linked_to_stripe"]}, code="invalid_payment_provider"
        )
    _, gateway = account
    methods = deps.store.payment_methods.list_for(customer)
    chosen = choice.payment_method_id if choice else None
    method = next((m for m in methods if (m.lago_id == chosen if chosen else m.is_default)), None)
    if method is None:
        raise ValidationFailed(
            {"authorization": ["customer_has_no_payment_method"]},
            code="customer_has_no_payment_method",
        )
    key = stable_id(
        "authorization",
        customer.organization_id,
        purpose,
        method.provider_method_id,
        str(request.amount_cents),
        request.amount_currency,
    )
    outcome = gateway.create_payment_intent(
        customer_id=customer.stripe_customer_id,
        payment_method_id=method.provider_method_id,
        amount=request.amount_cents,
        currency=request.amount_currency,
        description="Payment pre-authorization",
        metadata={
            "lago_organization_id": customer.organization_id,
            "lago_customer_id": customer.lago_id,
            "billow_purpose": "authorization",
        },
        manual_capture=True,
        idempotency_key=f"authorization-{key}",
    )
    if outcome.status == "requires_capture" and outcome.payment_intent_id:
        gateway.cancel_payment_intent(
            outcome.payment_intent_id, idempotency_key=f"authorization-release-{key}"
        )
        return Authorization(
            id=outcome.payment_intent_id,
            amount=outcome.amount,
            amount_capturable=outcome.amount_capturable,
            currency=request.amount_currency,
            status=outcome.status,
        )
    if outcome.payment_intent_id and not outcome.failed:
        gateway.cancel_payment_intent(
            outcome.payment_intent_id, idempotency_key=f"authorization-release-{key}"
        )
    raise ValidationFailed(
        {
            "authorization": [outcome.error_code or outcome.status],
            "provider_error": {
                "message": outcome.error_message or f"authorization {outcome.status}",
                "error_code": outcome.error_code,
                "decline_code": outcome.decline_code,
            },
        },
        code=outcome.error_code or "authorization_failed",
    )
