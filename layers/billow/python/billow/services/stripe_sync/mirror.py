"""Bringing one object's mirror in Stripe up to date: a plan, add-on, coupon or subscription.

The sync reads the object as it is now, not as it was when the sync was asked for, so
duplicated or reordered requests converge on the latest version and an old request
never undoes a newer one. It records what it did only if no edit came in meanwhile
(the state's ``revision``); otherwise it starts again on fresh reads.

Every Stripe write carries a key made of the object's id and version: a retried or
duplicated sync of one version makes no second Product, Price or Coupon. Stripe keeps
keys for a day, and after the first success the state holds the ids, so later syncs
update instead of creating.
"""

from __future__ import annotations

from typing import Literal

from billow.adapters.billing_records import SubscriptionSelection
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import AddOn, Plan
from billow.domain.clock import iso, parse_iso, utcnow
from billow.domain.customers import Customer
from billow.domain.errors import ProviderError
from billow.domain.events import webhook_event
from billow.domain.integrations import StripeConnection
from billow.domain.stripe_sync import (
    STRIPE_REFUSED,
    StripeSyncState,
    SyncedType,
    SyncError,
    coupon_params,
    coupon_terms,
    dashboard_url,
    price_terms,
    product_name,
    recurring,
)
from billow.domain.subscriptions import Subscription
from billow.ports import PaymentProvider
from billow.services.retries import retry_on_race
from billow.services.stripe_sync.subscriptions import (
    billing_anchor,
    cancel_at,
    hand_back_to_billow,
    record_stripe_subscription,
)
from billow.services.stripe_sync_requests import catalog_connection, request_syncs
from billow.services.subscription_billing import timezone_of

SyncOutcome = Literal["synced", "failed", "sync_off", "never_requested"]

_ROUTES: dict[SyncedType, str] = {
    "plan": "plans",
    "add_on": "add_ons",
    "coupon": "coupons",
    "subscription": "subscriptions",
}


def sync_object(
    deps: Dependencies,
    organization_id: str,
    object_type: SyncedType,
    lago_id: str,
    *,
    last_attempt: bool = False,
) -> SyncOutcome:
    """Sync one object. A Stripe error worth retrying is raised (the queue tries again
    with backoff) until ``last_attempt``; any other is recorded as ``failed`` and
    announced once."""
    connection = catalog_connection(deps, organization_id)
    if connection is None:
        return "sync_off"  # the connection was removed or stopped syncing: leave Stripe be
    return retry_on_race(
        lambda: _sync(deps, connection, organization_id, object_type, lago_id, last_attempt)
    )


def _sync(
    deps: Dependencies,
    connection: StripeConnection,
    organization_id: str,
    object_type: SyncedType,
    lago_id: str,
    last_attempt: bool,
) -> SyncOutcome:
    state = deps.store.stripe_sync.get(organization_id, object_type, lago_id)
    if state is None:
        return "never_requested"
    mirror = _Mirror(deps, connection, state)
    try:
        synced = mirror.run()
    except ProviderError as error:
        if error.retryable and not last_attempt:
            raise
        _record_failure(deps, state, error)
        if object_type == "subscription":
            hand_back_to_billow(deps, organization_id, state.code, lago_id, STRIPE_REFUSED)
        return "failed"
    deps.store.stripe_sync.record(synced)
    if object_type == "plan" and state.price_id not in (None, synced.price_id):
        _request_plan_subscribers(deps, organization_id, lago_id)
    return "synced"


def _request_plan_subscribers(deps: Dependencies, organization_id: str, plan_id: str) -> None:
    """A plan got a new Price: its subscriptions Stripe bills follow it."""
    plan = deps.store.plans.get_by_id(organization_id, plan_id)
    if plan is None:
        return
    billed = [
        sub
        for sub in deps.store.subscriptions.list_in(
            organization_id, SubscriptionSelection(statuses=["active"], plan=plan.code)
        )
        if sub.billed_by == "stripe" and sub.plan_lago_id == plan_id
    ]
    request_syncs(
        deps,
        organization_id,
        [("subscription", sub.lago_id, sub.external_id, sub.version) for sub in billed],
    )


def _record_failure(deps: Dependencies, state: StripeSyncState, error: ProviderError) -> None:
    """``failed`` with Stripe's words. The webhook goes out when the state turns failed,
    not again for a duplicated request that fails the same way; asking again (an edit,
    the resync route) makes the state pending, so a new failure is announced."""
    detail = SyncError(code=error.code or error.kind, message=error.message)
    announce = state.status != "failed"
    events = (
        [
            webhook_event(
                state.organization_id,
                "stripe_sync.failed",
                "stripe_sync_error",
                {
                    "object_type": state.object_type,
                    "lago_id": state.lago_id,
                    "code": state.code,
                    "stripe_error": detail.model_dump(),
                },
            )
        ]
        if announce
        else []
    )
    failed = state.model_copy(update={"status": "failed", "error": detail})
    deps.store.stripe_sync.record(failed, events)


def stripe_metadata(
    deps: Dependencies, object_type: SyncedType, organization_id: str, lago_id: str, code: str
) -> dict[str, str]:
    """Links back from Stripe's dashboard to the object in Billow."""
    metadata = {
        "billow_id": lago_id,
        "billow_organization_id": organization_id,
        "billow_url": f"{deps.settings.public_api_url}/api/v1/{_ROUTES[object_type]}/{code}",
    }
    if object_type == "subscription":
        # Upgrades hand a Stripe subscription on to a new Billow subscription (a new id)
        # under the same external id: cancellations and invoices find it by that.
        metadata["billow_external_id"] = code
    return metadata


def plan_price(deps: Dependencies, connection: StripeConnection, plan: Plan) -> str:
    """The plan's current Price, syncing the plan first when its mirror is behind (a
    subscription, or a checkout, cannot wait for the plan's own sync)."""
    store, organization_id = deps.store, plan.organization_id
    for _ in range(2):
        mirrored = store.stripe_sync.get(organization_id, "plan", plan.lago_id)
        if (
            mirrored is not None
            and mirrored.status == "succeeded"
            and mirrored.price_id is not None
            and mirrored.price_terms == price_terms(plan)
        ):
            return mirrored.price_id
        if mirrored is None:
            transaction = Transaction()
            store.stripe_sync.stage_requested(
                transaction, organization_id, "plan", plan.lago_id, plan.code, plan.version
            )
            store.commit(transaction)
        # A Stripe error worth retrying fails this message too, which the queue retries.
        _sync(deps, connection, organization_id, "plan", plan.lago_id, False)
    raise ProviderError(
        f"plan {plan.code} could not be mirrored in Stripe",
        kind="invalid_request",
        code="plan_not_synced",
    )


class _Mirror:
    """One sync of one object: the Stripe calls it needs and the state they lead to."""

    def __init__(
        self, deps: Dependencies, connection: StripeConnection, state: StripeSyncState
    ) -> None:
        self.deps = deps
        self.connection = connection
        self.state = state
        self.gateway: PaymentProvider = deps.stripe_for(connection)

    def run(self) -> StripeSyncState:
        state = self.state
        if state.object_type == "plan":
            plan = self.deps.store.plans.get_by_id(state.organization_id, state.lago_id)
            if plan is None:
                return self._done(state.requested_version)
            if plan.deleted_at is not None:
                return self._retire_product(plan.version)
            return self._product_and_price(plan)
        if state.object_type == "add_on":
            add_on = self.deps.store.add_ons.get(state.organization_id, state.code)
            if add_on is None or add_on.lago_id != state.lago_id:
                return self._retire_product(state.requested_version)  # deleted in Billow
            return self._product_and_price(add_on)
        if state.object_type == "subscription":
            return self._subscription()
        return self._coupon()

    def _metadata(self, code: str) -> dict[str, str]:
        state = self.state
        return stripe_metadata(
            self.deps, state.object_type, state.organization_id, state.lago_id, code
        )

    def _done(self, version: int, **changes: object) -> StripeSyncState:
        stripe_id = changes.get("stripe_id", self.state.stripe_id)
        url = (
            dashboard_url(self.state.object_type, str(stripe_id), self.connection.livemode)
            if stripe_id
            else None
        )
        return self.state.model_copy(
            update={
                "status": "succeeded",
                "synced_version": version,
                "error": None,
                "stripe_url": url,
                "synced_at": iso(utcnow()),
                **changes,
            }
        )

    def _product_and_price(self, item: Plan | AddOn) -> StripeSyncState:
        state, key = self.state, f"billow-{self.state.object_type}-{item.lago_id}"
        name, metadata = product_name(item), self._metadata(item.code)
        product_id = state.stripe_id
        if product_id is None:
            product_id = self.gateway.create_product(name, metadata, f"{key}-product")
        elif state.stripe_name != name:
            self.gateway.update_product(product_id, name, True, f"{key}-product-v{item.version}")
        terms, price_id = price_terms(item), state.price_id
        if price_id is None or state.price_terms != terms:
            price_id = self.gateway.create_price(
                product_id=product_id,
                amount=item.amount_cents,
                currency=item.amount_currency.lower(),
                recurring=recurring(item) if isinstance(item, Plan) else None,
                metadata=metadata,
                idempotency_key=f"{key}-price-v{item.version}",
            )
            if state.price_id is not None:
                # Running Stripe subscriptions keep the old Price until they move off it.
                self.gateway.archive_price(state.price_id, f"{key}-archive-{state.price_id}")
        return self._done(
            item.version,
            stripe_id=product_id,
            stripe_name=name,
            price_id=price_id,
            price_terms=terms,
            charge_products=self._charge_products(item) if isinstance(item, Plan) else {},
        )

    def _charge_products(self, plan: Plan) -> dict[str, str]:
        """Seed 004: each usage charge is a Product of its own, ``<plan> <metric>``, made
        once (the usage Billow adds to Stripe's invoices is a line of it)."""
        made = dict(self.state.charge_products)
        metrics = self.deps.store.usage.get_metrics_by_id(
            plan.organization_id, [charge.billable_metric_id for charge in plan.charges]
        )
        for charge in plan.charges:
            metric = metrics.get(charge.billable_metric_id)
            if charge.lago_id in made or metric is None:
                continue
            made[charge.lago_id] = self.gateway.create_product(
                f"{plan.name} {metric.name}",
                {**self._metadata(plan.code), "billow_charge_id": charge.lago_id},
                f"billow-charge-{charge.lago_id}-product",
            )
        return made

    def _retire_product(self, version: int) -> StripeSyncState:
        """Deleted in Billow: the Product and its Price are archived, never deleted
        (Stripe keeps the invoices that name them)."""
        state, key = self.state, f"billow-{self.state.object_type}-{self.state.lago_id}"
        if state.stripe_id is not None and not state.retired:
            if state.price_id is not None:
                self.gateway.archive_price(state.price_id, f"{key}-archive-{state.price_id}")
            self.gateway.update_product(
                state.stripe_id, state.stripe_name or "", False, f"{key}-product-retired"
            )
        return self._done(version, retired=True)

    def _coupon(self) -> StripeSyncState:
        state = self.state
        coupon = self.deps.store.coupons.get_by_id(state.organization_id, state.lago_id)
        if coupon is None:
            return self._done(state.requested_version)
        if coupon.deleted_at is not None or coupon.ended_at(iso(utcnow())) is not None:
            # Terminated in Billow: deleted in Stripe; discounts already applied stay.
            if state.stripe_id is not None and not state.retired:
                self.gateway.delete_coupon(state.stripe_id)
            return self._done(coupon.version, retired=True)
        key = f"billow-coupon-{coupon.lago_id}-v{coupon.version}"
        terms, coupon_id = coupon_terms(coupon), state.stripe_id
        if coupon_id is None or state.coupon_terms != terms:
            coupon_id = self.gateway.create_coupon(
                coupon_params(coupon), coupon.name, self._metadata(coupon.code), key
            )
            if state.stripe_id is not None:
                self.gateway.delete_coupon(state.stripe_id)  # its terms were replaced
        elif state.stripe_name != coupon.name:
            self.gateway.rename_coupon(coupon_id, coupon.name, f"{key}-name")
        return self._done(
            coupon.version,
            stripe_id=coupon_id,
            stripe_name=coupon.name,
            coupon_terms=terms,
        )

    # -- subscriptions -------------------------------------------------------------------

    def _subscription(self) -> StripeSyncState:
        state, store = self.state, self.deps.store
        sub = store.subscriptions.get(state.organization_id, state.code, state.lago_id)
        if sub is None or sub.billed_by != "stripe":
            return self._done(state.requested_version)
        stripe_id = sub.stripe_subscription_id
        if not sub.is_live:
            if stripe_id is not None and not state.retired and not self._passed_on(sub):
                self.gateway.cancel_subscription(stripe_id)
            if stripe_id is None and sub.checkout is not None:
                # Nobody may complete its page now. One completed first has its Stripe
                # subscription canceled when its event arrives (``complete_checkout``).
                self.gateway.close_checkout(sub.checkout.session_id)
            return self._done(sub.version, stripe_id=stripe_id, retired=True)
        if sub.status == "pending":
            return state.model_copy(update={"status": "pending"})  # its twin comes at its start
        plan = store.plans.get_by_id(sub.organization_id, sub.plan_lago_id)
        customer = store.customers.get(sub.organization_id, sub.external_customer_id)
        organization = store.organizations.get(sub.organization_id)
        if plan is None or customer is None or organization is None:
            return self._done(sub.version)
        price_id = plan_price(self.deps, self.connection, plan)
        if stripe_id is None:
            # Stripe bills from when it takes over: the start, or where Billow stopped.
            started = parse_iso(sub.stripe_starts_at or sub.started_at or sub.subscription_at)
            stripe_id = self.gateway.create_subscription(
                customer_id=customer.stripe_customer_id or "",
                price_id=price_id,
                payment_method_id=self._payment_method(sub, customer),
                billing_cycle_anchor=billing_anchor(
                    sub, plan, timezone_of(organization, customer), started
                ),
                cancel_at=cancel_at(sub),
                metadata=self._metadata(sub.external_id),
                automatic_tax=self.connection.automatic_tax,
                idempotency_key=f"billow-subscription-{sub.lago_id}",
            )
            record_stripe_subscription(
                self.deps, sub.organization_id, sub.external_id, sub.lago_id, stripe_id
            )
        elif state.price_id != price_id:
            item_id, current = self.gateway.subscription_item(stripe_id)
            if current != price_id:
                # Another plan: an upgrade now, prorated (a downgrade arrives at the period
                # boundary the run reached). The same plan repriced: from the next period,
                # as Billow bills its own subscriptions at the plan's amount of the day.
                self.gateway.change_subscription_price(
                    stripe_id,
                    item_id,
                    price_id,
                    state.priced_plan not in (None, plan.lago_id),
                    f"billow-subscription-{sub.lago_id}-{price_id}",
                )
        return self._done(
            sub.version, stripe_id=stripe_id, price_id=price_id, priced_plan=plan.lago_id
        )

    def _passed_on(self, sub: Subscription) -> bool:
        """An ended subscription whose Stripe twin now bills its successor (an upgrade or
        a downgrade that took over) keeps it running."""
        return any(
            other.lago_id != sub.lago_id
            and other.is_live
            and other.stripe_subscription_id == sub.stripe_subscription_id
            for other in self.deps.store.subscriptions.list_for_external_id(
                sub.organization_id, sub.external_id
            )
        )

    def _payment_method(self, sub: Subscription, customer: Customer) -> str | None:
        """The subscription's own card, else None: Stripe charges the customer's default."""
        chosen = sub.payment_method.payment_method_id if sub.payment_method else None
        if chosen is None:
            return None
        return next(
            (
                method.provider_method_id
                for method in self.deps.store.payment_methods.list_for(customer)
                if method.lago_id == chosen
            ),
            None,
        )
