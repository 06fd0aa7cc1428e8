"""Subscribing through Stripe's hosted checkout: the page opened, completed or expired.

A subscription asked for with ``checkout`` waits, ``pending`` and never due for the
billing run, until the customer completes Stripe's page. Stripe then makes the Stripe
subscription and bills its first invoice; Billow activates its own, links the two, and
keeps the card the customer entered as one of the customer's payment methods. A page
that expires unused cancels the subscription.

Stripe's events arrive late, twice and out of order. Only a pending subscription still
waiting for that very session is activated or canceled, so either happens once. A page
completed after Billow canceled its subscription (terminated through the API, say) has
the Stripe subscription it made canceled at once: Stripe never bills a subscription
Billow no longer has.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain import stripe_sync
from billow.domain.catalog import Plan
from billow.domain.clock import iso, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import ProviderError, ValidationFailed
from billow.domain.integrations import StripeConnection
from billow.domain.organizations import Organization
from billow.domain.payments import Applied
from billow.domain.subscriptions import CheckoutLink, Subscription
from billow.ports import SubscriptionCheckout
from billow.services.payment_methods import stage_saved_card
from billow.services.provider_sync import link_in_stripe
from billow.services.retries import retry_on_race
from billow.services.stripe_sync.mirror import plan_price, stripe_metadata
from billow.services.stripe_sync.subscriptions import assign_owner, billing_anchor
from billow.services.stripe_sync_requests import billing_owner, catalog_connection
from billow.services.subscription_billing import (
    Change,
    activate,
    cancel_pending,
    next_due,
    subscription_webhook,
    timezone_of,
)
from billow.services.subscriptions.requests import CreateSubscription
from billow.services.subscriptions.start import new_subscription

_MIN_LIFETIME = timedelta(minutes=30)
"""Stripe's shortest Checkout Session."""
_MAX_LIFETIME = timedelta(hours=24)


def refuse_misuse(
    request: CreateSubscription, existing: Subscription | None, now: datetime
) -> None:
    """What ``checkout`` cannot go with: it starts a new subscription now, on the card
    the customer enters, so a plan change, a later start, a chosen card or a hold on
    the card make no sense with it."""
    body = request.subscription
    errors: dict[str, object] = {}
    if existing is not None:
        errors["external_id"] = ["subscription_already_exists"]
    if body.subscription_at is not None and body.subscription_at > now:
        errors["subscription_at"] = ["not_allowed_with_checkout"]
    if body.payment_method is not None:
        errors["payment_method"] = ["not_allowed_with_checkout"]
    if request.authorization is not None:
        errors["authorization"] = ["not_allowed_with_checkout"]
    if errors:
        raise ValidationFailed(errors)


def _connection_for(deps: Dependencies, customer: Customer, plan: Plan) -> StripeConnection:
    """The connection whose Stripe account holds the plan's Price, or the 422 that says
    why the plan cannot be subscribed to through Stripe's checkout."""
    connection = catalog_connection(deps, customer.organization_id)
    _, reason = billing_owner(deps, customer, plan)
    if connection is None or reason not in (None, stripe_sync.CUSTOMER_NOT_IN_STRIPE):
        raise ValidationFailed({"checkout": [reason or stripe_sync.SUBSCRIPTION_SYNC_OFF]})
    linked_elsewhere = (
        customer.stripe_customer_id is not None
        and customer.billing_configuration.payment_provider_code != connection.code
    )
    if linked_elsewhere:
        raise ValidationFailed({"checkout": ["customer_in_another_stripe_account"]})
    return connection


def open_checkout(
    deps: Dependencies,
    organization: Organization,
    customer: Customer,
    plan: Plan,
    request: CreateSubscription,
    generation: tuple[str, int],
    now: datetime,
) -> Subscription:
    """Stripe's page for a new subscription to ``plan``; the subscription is saved
    pending with the page's URL, announced by ``subscription.checkout_url_generated``."""
    body = request.subscription
    assert body.checkout is not None
    external_id, count = generation
    connection = _connection_for(deps, customer, plan)
    try:
        price_id = plan_price(deps, connection, plan)
    except ProviderError as error:
        if error.retryable:
            raise
        raise ValidationFailed({"checkout": ["plan_not_synced"]}) from error
    customer = link_in_stripe(deps, connection, customer)
    timezone = timezone_of(organization, customer)
    sub = assign_owner(
        deps,
        customer,
        plan,
        new_subscription(organization.id, customer, plan, body, external_id, now, now),
    )
    if sub.billed_by != "stripe":  # the customer could not be made in Stripe
        raise ValidationFailed({"checkout": [sub.not_synced_reason or "customer_not_in_stripe"]})
    anchor = billing_anchor(sub, plan, timezone, now)
    lifetime = _MAX_LIFETIME
    if anchor is not None:
        # Stripe's anchor must still lie ahead when the customer completes the page.
        until_anchor = datetime.fromtimestamp(anchor, UTC) - now
        lifetime = max(_MIN_LIFETIME, min(_MAX_LIFETIME, until_anchor))
    options = body.checkout
    opened = deps.stripe_for(connection).create_subscription_checkout(
        SubscriptionCheckout(
            customer_id=customer.stripe_customer_id or "",
            price_id=price_id,
            success_url=str(options.success_url),
            cancel_url=str(options.cancel_url),
            allow_promotion_codes=options.allow_promotion_codes,
            collect_billing_address=options.collect_billing_address,
            collect_phone_number=options.collect_phone_number,
            tax_id_collection=options.tax_id_collection,
            automatic_tax=connection.automatic_tax,
            billing_cycle_anchor=anchor,
            expires_at=int((now + lifetime).timestamp()),
            metadata=stripe_metadata(
                deps, "subscription", organization.id, sub.lago_id, external_id
            ),
        ),
        idempotency_key=f"billow-checkout-{sub.lago_id}",
    )
    waiting = sub.model_copy(
        update={
            "checkout": CheckoutLink(
                session_id=opened.session_id,
                url=opened.url,
                expires_at=iso(datetime.fromtimestamp(opened.expires_at, UTC)),
            )
        }
    )
    change = Change(deps)
    change.stripe_limit = stripe_sync.MAX_STRIPE_SUBSCRIPTIONS_PER_CUSTOMER
    change.starts.append((organization.id, external_id, count))
    saved = change.save(waiting, None)  # no next_billing_at: the run leaves it be
    change.events.append(
        subscription_webhook(
            "subscription.checkout_url_generated", saved, plan, customer, now, timezone
        )
    )
    change.commit_without_invoice()
    return saved


def _waiting_for(
    deps: Dependencies, organization_id: str, session: dict[str, Any]
) -> Subscription | None:
    """The Billow subscription a subscription-mode session was opened for."""
    metadata = session.get("metadata") or {}
    lago_id, external_id = metadata.get("billow_id"), metadata.get("billow_external_id")
    if session.get("mode") != "subscription" or not (
        isinstance(lago_id, str) and isinstance(external_id, str)
    ):
        return None
    sub = deps.store.subscriptions.get(organization_id, external_id, lago_id)
    if sub is None or sub.checkout is None or sub.checkout.session_id != session.get("id"):
        return None
    return sub


def complete_checkout(
    deps: Dependencies,
    connection: StripeConnection,
    session: dict[str, Any],
    created: int,
    transaction: Transaction,
) -> Applied:
    """``checkout.session.completed``: activate the subscription once, and keep the card
    (staged in ``transaction``, the event's own, so a retried event saves it still)."""
    organization_id = connection.organization_id
    stripe_id = session.get("subscription")
    stripe_id = stripe_id.get("id") if isinstance(stripe_id, dict) else stripe_id
    if _waiting_for(deps, organization_id, session) is None or not isinstance(stripe_id, str):
        return "ignored"
    gateway = deps.stripe_for(connection)
    made = gateway.checkout_subscription(stripe_id)

    def activate_once() -> Subscription | None:
        sub = _waiting_for(deps, organization_id, session)
        if sub is None or sub.status != "pending":
            return sub
        organization = deps.store.organizations.get(organization_id)
        customer = deps.store.customers.get(organization_id, sub.external_customer_id)
        plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
        if organization is None or customer is None or plan is None:
            return None
        timezone, now = timezone_of(organization, customer), utcnow()
        # Stripe billed the first period with the page: the fee ``activate`` drafts is
        # left out (the change commits no invoice).
        started, _ = activate(sub, plan, datetime.fromtimestamp(made.start_date, UTC), timezone)
        started = started.model_copy(
            update={
                "stripe_subscription_id": made.id,
                "next_billing_at": next_due(started, plan, now, timezone),
            }
        )
        change = Change(deps)
        saved = change.save(started, sub)
        change.events.append(
            subscription_webhook("subscription.started", saved, plan, customer, now, timezone)
        )
        change.commit_without_invoice()
        return saved

    sub = retry_on_race(activate_once)
    if sub is None:
        return "ignored"
    if sub.stripe_subscription_id is None:
        # Canceled in Billow while the page was open, then completed by the customer.
        gateway.cancel_subscription(made.id)
        return "processed"
    if sub.stripe_subscription_id != made.id:
        return "ignored"
    customer = deps.store.customers.get(organization_id, sub.external_customer_id)
    if customer is not None and made.default_payment_method is not None:
        stage_saved_card(
            deps, transaction, connection, gateway, customer, made.default_payment_method, created
        )
    return "processed"


def expire_checkout(
    deps: Dependencies, connection: StripeConnection, session: dict[str, Any]
) -> Applied:
    """``checkout.session.expired``: the customer never completed the page; the pending
    subscription is canceled, as a pending subscription is when terminated."""
    organization_id = connection.organization_id

    def cancel() -> Applied:
        sub = _waiting_for(deps, organization_id, session)
        if sub is None or sub.status != "pending":
            return "ignored"
        organization = deps.store.organizations.get(organization_id)
        customer = deps.store.customers.get(organization_id, sub.external_customer_id)
        plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
        if organization is None or customer is None or plan is None:
            return "ignored"
        change = Change(deps)
        cancel_pending(change, sub, plan, customer, utcnow(), timezone_of(organization, customer))
        change.commit_without_invoice()
        return "processed"

    return retry_on_race(cancel)
