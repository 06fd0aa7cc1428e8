"""What a subscription owes at a moment: activation, period boundaries, trial ends, plan
swaps and termination. Used by the invoice worker (scheduled) and by the API (at once).

A subscription records ``billed_until``, the end of the last span it was invoiced for,
and every fee starts no earlier than that, so no span is invoiced twice. The moment a
subscription is next due (``next_billing_at``) is what the billing run's index finds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from billow.adapters.invoice_numbering import NumberSequence
from billow.adapters.listing import Read
from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.clock import iso, parse_iso, stable_id
from billow.domain.customers import Customer
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.invoices import FeeItem
from billow.domain.organizations import Organization
from billow.domain.periods import Period, billing_period, subscription_fee, trial_end
from billow.domain.stripe_sync import HANDOVER_NEXT_PERIOD, IN_TRIAL
from billow.domain.subscriptions import Subscription
from billow.services.billing_run import BillingKeys
from billow.services.invoicing import AlreadyRead, FeeDraft, issue_invoice
from billow.services.retries import retry_on_race
from billow.services.stripe_sync_requests import billing_owner, sync_requested
from billow.services.usage.fees import usage_fees, usage_start

INSTANT = timedelta(microseconds=1)


def timezone_of(organization: Organization, customer: Customer) -> str:
    return customer.timezone or organization.timezone or "UTC"


def period_at(sub: Subscription, plan: Plan, at: datetime, timezone: str) -> Period:
    anchor = parse_iso(sub.started_at or sub.subscription_at)
    return billing_period(
        at,
        interval=plan.interval,
        billing_time=sub.billing_time,
        anchor=anchor,
        timezone=timezone,
    )


def current_period(
    sub: Subscription, plan: Plan, now: datetime, timezone: str
) -> tuple[datetime, datetime] | None:
    if sub.status != "active":
        return None
    period = period_at(sub, plan, now, timezone)
    return period.start, period.end


def _trial_end(sub: Subscription) -> datetime | None:
    return parse_iso(sub.trial_ended_at) if sub.trial_ended_at else None


def next_due(sub: Subscription, plan: Plan, after: datetime, timezone: str) -> str:
    """The next moment the subscription owes something: its next period boundary, the end
    of a pay-in-advance trial inside the current period, or its ``ending_at``."""
    period = period_at(sub, plan, after, timezone)
    candidates = [period.end]
    ends_trial = _trial_end(sub)
    # A pay-in-advance plan bills at its trial's end; a subscription Stripe is to bill
    # once its trial is over is handed over then.
    visits_trial_end = plan.pay_in_advance or sub.not_synced_reason == IN_TRIAL
    if visits_trial_end and ends_trial and after < ends_trial < period.end:
        candidates.append(ends_trial)
    if sub.ending_at:
        candidates.append(max(parse_iso(sub.ending_at), after))
    return iso(min(candidates))


def _fee_draft(
    sub: Subscription, plan: Plan, amount: int, start: datetime, end: datetime
) -> FeeDraft:
    return FeeDraft(
        key=f"subscription:{sub.lago_id}",
        item=FeeItem(
            type="subscription",
            code=plan.code,
            name=plan.name,
            invoice_display_name=plan.invoice_display_name,
            lago_item_id=sub.lago_id,
        ),
        amount_cents=amount,
        unit_amount_cents=amount,
        from_date=iso(start),
        to_date=iso(end - timedelta(seconds=1)),
        lago_subscription_id=sub.lago_id,
        external_subscription_id=sub.external_id,
        pay_in_advance=plan.pay_in_advance,
        tax_code_choices=[plan.tax_codes],
        coupon_plan_code=plan.code,
    )


def _billed_from(sub: Subscription) -> datetime:
    started = parse_iso(sub.started_at or sub.subscription_at)
    return max(started, parse_iso(sub.billed_until)) if sub.billed_until else started


def advance_fee(
    sub: Subscription, plan: Plan, at: datetime, timezone: str
) -> tuple[FeeDraft | None, Subscription]:
    """A pay-in-advance plan's fee for the rest of the period that ``at`` is in, once the
    trial is over; the subscription comes back with ``billed_until`` moved."""
    ends_trial = _trial_end(sub)
    if not plan.pay_in_advance or (ends_trial and ends_trial > at):
        return None, sub
    period = period_at(sub, plan, at, timezone)
    fee = subscription_fee(
        plan.amount_cents,
        period,
        started_at=max(at, _billed_from(sub)),
        timezone=timezone,
        trial_ended_at=ends_trial,
    )
    if fee.span.empty:
        return None, sub
    return (
        _fee_draft(sub, plan, fee.amount_cents, fee.from_datetime, fee.to_datetime),
        sub.model_copy(update={"billed_until": iso(fee.to_datetime)}),
    )


def arrears_fee(
    sub: Subscription, plan: Plan, at: datetime, timezone: str, terminating: bool
) -> tuple[FeeDraft | None, Subscription]:
    """A pay-in-arrears plan's fee for time used up to ``at`` (a boundary, or a termination,
    whose day counts in full as Lago counts it)."""
    if plan.pay_in_advance:
        return None, sub
    period = period_at(sub, plan, at, timezone)
    if period.start == at:
        period = period_at(sub, plan, at - INSTANT, timezone)
    fee = subscription_fee(
        plan.amount_cents,
        period,
        started_at=_billed_from(sub),
        timezone=timezone,
        trial_ended_at=_trial_end(sub),
        terminated_at=at if terminating else None,
    )
    if fee.span.empty:
        return None, sub
    return (
        _fee_draft(sub, plan, fee.amount_cents, fee.from_datetime, fee.to_datetime),
        sub.model_copy(update={"billed_until": iso(fee.to_datetime)}),
    )


def subscription_webhook(
    webhook_type: str,
    sub: Subscription,
    plan: Plan,
    customer: Customer,
    now: datetime,
    timezone: str,
) -> OutboxEvent:
    body = sub.as_lago(
        plan.amount_cents, plan.amount_currency, current_period(sub, plan, now, timezone)
    )
    body["customer"] = customer.as_lago()
    return webhook_event(sub.organization_id, webhook_type, "subscription", body)


def cancel_pending(
    change: Change,
    sub: Subscription,
    plan: Plan,
    customer: Customer,
    now: datetime,
    timezone: str,
) -> Subscription:
    """Stage a pending subscription canceled (it never started), announced as Lago does."""
    saved = change.save(
        sub.model_copy(
            update={"status": "canceled", "canceled_at": iso(now), "next_billing_at": None}
        ),
        sub,
    )
    change.events.append(
        subscription_webhook("subscription.canceled", saved, plan, customer, now, timezone)
    )
    return saved


def activate(
    sub: Subscription, plan: Plan, at: datetime, timezone: str
) -> tuple[Subscription, FeeDraft | None]:
    """A subscription starts at ``at``: its trial clock, its first in-advance fee, its next
    due time."""
    initial = parse_iso(sub.initial_started_at) if sub.initial_started_at else at
    ends_trial = trial_end(initial, plan.trial_period)
    started = sub.model_copy(
        update={
            "status": "active",
            "started_at": iso(at),
            "initial_started_at": iso(initial),
            "trial_ended_at": iso(ends_trial) if ends_trial else None,
        }
    )
    draft, started = advance_fee(started, plan, at, timezone)
    return started.model_copy(update={"next_billing_at": next_due(started, plan, at, timezone)}), (
        draft
    )


def terminate(
    sub: Subscription, plan: Plan, at: datetime, timezone: str, bill: bool
) -> tuple[Subscription, FeeDraft | None]:
    draft, sub = arrears_fee(sub, plan, at, timezone, terminating=True) if bill else (None, sub)
    return (
        sub.model_copy(
            update={
                "status": "terminated",
                "terminated_at": iso(at),
                "next_billing_at": None,
                "next_plan_code": None,
                "next_subscription_id": None,
                "downgrade_plan_date": None,
            }
        ),
        draft,
    )


def _changes_stripe(sub: Subscription, before: Subscription | None) -> bool:
    """A write that its Stripe twin must follow: a Stripe-billed subscription made, or
    changing status, plan or end."""
    if sub.billed_by != "stripe":
        return False
    if before is None or before.billed_by != "stripe":
        return True
    return (sub.status, sub.plan_lago_id, sub.ending_at) != (
        before.status,
        before.plan_lago_id,
        before.ending_at,
    )


class Change:
    """Subscription writes and their events, staged with (or without) an invoice."""

    def __init__(self, deps: Dependencies, read: AlreadyRead | None = None) -> None:
        self.deps = deps
        self.read = read
        """What the caller read already that issuing the invoice would read again."""
        self.writes: list[tuple[Subscription, Subscription | None]] = []
        """Each write and the subscription as it was read (None: a new one)."""
        self.events: list[OutboxEvent] = []
        self.drafts: list[FeeDraft] = []
        self.stripe_limit: int | None = None
        """Set by the API's creations: at most this many active Stripe-billed
        subscriptions per customer, whatever creations race."""
        self.starts: list[tuple[str, str, int]] = []
        """(organization, external id, generation) claims for brand-new subscriptions."""
        self.usage_writes: list[Callable[[Transaction], None]] = []
        """What billing usage moves with its invoice (recurring metrics' carried values)."""

    def bill_usage(self, sub: Subscription, plan: Plan, at: datetime, timezone: str) -> None:
        """Add the in-arrears usage charges of the period that ``at`` ends (a period
        boundary, or a termination that cuts the period short). Stripe bills the usage of
        the subscriptions it bills, so those are left to it."""
        if not plan.charges or sub.started_at is None or sub.billed_by == "stripe":
            return
        period = period_at(sub, plan, at - INSTANT, timezone)
        start = usage_start(sub, period.start)
        if start >= at:
            return
        drafts, writes = usage_fees(self.deps, sub, plan, (period.start, period.end), (start, at))
        self.drafts.extend(drafts)
        self.usage_writes.append(writes)

    def save(self, sub: Subscription, previous: Subscription | None) -> Subscription:
        saved = sub.model_copy(update={"version": (previous.version + 1) if previous else 0})
        self.writes.append((saved, previous))
        return saved

    def stage(self, transaction: Transaction) -> list[OutboxEvent]:
        events = list(self.events)
        for write in self.usage_writes:
            write(transaction)
        for sub, before in self.writes:
            self.deps.store.subscriptions.stage(transaction, sub, before)
            if self.stripe_limit is not None and sub.billed_by == "stripe":
                self.deps.store.subscriptions.stage_stripe_billed_cap(
                    transaction, sub, self.stripe_limit
                )
            if _changes_stripe(sub, before):
                # Its Stripe twin follows: made, moved to another Price, or canceled.
                self.deps.store.stripe_sync.stage_requested(
                    transaction,
                    sub.organization_id,
                    "subscription",
                    sub.lago_id,
                    sub.external_id,
                    sub.version,
                )
                events.append(sync_requested(sub.organization_id, "subscription", sub.lago_id))
        for organization_id, external_id, generation in self.starts:
            self.deps.store.subscriptions.stage_start(
                transaction, organization_id, external_id, generation
            )
        return events

    def commit(
        self,
        organization: Organization,
        customer: Customer,
        invoice_id: str,
        at: datetime,
        sub: Subscription,
        currency: str,
    ) -> None:
        """With fees: one invoice carrying these writes. Without: just the writes. Fees of
        subscriptions Stripe bills are left out: Stripe invoices them."""
        # Stripe bills a subscription it billed before this change and after it. One
        # handed over to Stripe here keeps the fees Billow owes for its last period; one
        # handed back to Billow is billed from its start.
        stripe_billed = {
            saved.lago_id
            for saved, before in self.writes
            if saved.billed_by == "stripe" and (before is None or before.billed_by == "stripe")
        }
        drafts = [
            draft
            for draft in self.drafts
            if draft is not None and draft.lago_subscription_id not in stripe_billed
        ]
        if drafts:
            issue_invoice(
                self.deps,
                organization,
                customer,
                invoice_id=invoice_id,
                invoice_type="subscription",
                currency=currency,
                drafts=drafts,
                apply_coupons=True,
                issued_at=at,
                payment_method=sub.payment_method,
                billing_period=(
                    min(d.from_date or "" for d in drafts),
                    max(d.to_date or "" for d in drafts),
                ),
                subscription_ids=sorted({d.lago_subscription_id or "" for d in drafts}),
                stage_more=self.stage,
                read=self.read,
            )
            return
        self.commit_without_invoice()

    def commit_without_invoice(self) -> None:
        transaction = Transaction()
        transaction.publish(self.stage(transaction))
        self.deps.store.commit(transaction)


def bill_due(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    lago_id: str,
    now: datetime,
    owners: BillingKeys | None = None,
) -> tuple[str, datetime | None]:
    """Settle the earliest moment a subscription owes at or before ``now``, exactly once.
    Returns what happened and when it is next due (None once it is over). ``owners``: its
    plan and customer as the caller knows them, to read them with it."""
    return retry_on_race(
        lambda: _bill_due_once(deps, organization_id, external_id, lago_id, now, owners)
    )


def _bill_due_once(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    lago_id: str,
    now: datetime,
    owners: BillingKeys | None,
) -> tuple[str, datetime | None]:
    sub, reads = _read_due(deps, organization_id, external_id, lago_id, owners)
    original = sub
    due = sub.due_at() if sub else None
    if sub is None or not sub.is_live or due is None or due > now:
        return "not_due", due
    organization, customer, plan, read = (
        reads or _read_for_billing(deps, organization_id, _keys_of(sub), None)[1]
    )
    if organization is None or customer is None or plan is None:
        return "orphaned", None
    timezone = timezone_of(organization, customer)
    change = Change(deps, read)
    invoice_id = stable_id("subscription-invoice", sub.lago_id, iso(due))
    if sub.status == "active" and sub.not_synced_reason == IN_TRIAL:
        sub, handed = _after_trial(deps, sub, customer, plan, due, timezone)
        if handed is not None:
            change.save(handed, original)
            change.commit_without_invoice()
            return "handed_to_stripe", handed.due_at()
    if sub.status == "pending":
        started, draft = activate(sub, plan, due, timezone)
        if draft:
            change.drafts.append(draft)
        saved = change.save(started, sub)
        change.events.append(
            subscription_webhook("subscription.started", saved, plan, customer, due, timezone)
        )
        change.commit(organization, customer, invoice_id, due, saved, plan.amount_currency)
        return "activated", saved.due_at()
    if sub.ending_at and parse_iso(sub.ending_at) <= due:
        ended, draft = terminate(sub, plan, due, timezone, bill=True)
        change.drafts.extend([draft] if draft else [])
        change.bill_usage(sub, plan, due, timezone)
        saved = change.save(ended, sub)
        change.events.append(
            subscription_webhook("subscription.terminated", saved, plan, customer, due, timezone)
        )
        _cancel_pending_successor(deps, change, sub, due)
        change.commit(organization, customer, invoice_id, due, saved, plan.amount_currency)
        return "terminated", None
    at_boundary = period_at(sub, plan, due, timezone).start == due
    if at_boundary and sub.next_subscription_id:
        successor = deps.store.subscriptions.get(
            organization_id, sub.external_id, sub.next_subscription_id
        )
        if successor is not None and successor.status == "pending":
            return _swap_plans(
                deps, change, organization, customer, sub, plan, successor, due, invoice_id
            )
        # The planned downgrade was canceled meanwhile: the plan simply goes on.
        sub = sub.model_copy(
            update={
                "next_plan_code": None,
                "next_subscription_id": None,
                "downgrade_plan_date": None,
            }
        )
    handing_over = False
    if at_boundary and sub.not_synced_reason == HANDOVER_NEXT_PERIOD:
        # Sync was turned on while Billow billed it: Billow bills the period that ends
        # here, and Stripe every period from here on.
        owner, reason = billing_owner(deps, customer, plan, trial_over=sub.trial_over(due))
        handing_over = owner == "stripe"
        sub = sub.model_copy(update={"not_synced_reason": reason})
    arrears, billed = arrears_fee(sub, plan, due, timezone, terminating=False)
    advance, billed = (None, billed) if handing_over else advance_fee(billed, plan, due, timezone)
    change.drafts.extend(draft for draft in (arrears, advance) if draft)
    if at_boundary:
        change.bill_usage(sub, plan, due, timezone)
    moved = billed.model_copy(update={"next_billing_at": next_due(billed, plan, due, timezone)})
    if handing_over:
        moved = moved.model_copy(
            update={"billed_by": "stripe", "billed_until": iso(due), "stripe_starts_at": iso(due)}
        )
    saved = change.save(moved, original)
    change.commit(organization, customer, invoice_id, due, saved, plan.amount_currency)
    return ("billed" if change.drafts else "advanced"), saved.due_at()


def _keys_of(sub: Subscription) -> BillingKeys:
    return BillingKeys(sub.plan_lago_id, sub.lago_customer_id, sub.external_customer_id)


BillingReads = tuple[Organization | None, Customer | None, Plan | None, AlreadyRead]


def _read_due(
    deps: Dependencies,
    organization_id: str,
    external_id: str,
    lago_id: str,
    owners: BillingKeys | None,
) -> tuple[Subscription | None, BillingReads | None]:
    """The subscription, and what billing it reads besides it when the caller knew its
    owners (all in one BatchGetItem); None for those when unknown or changed since."""
    this = deps.store.subscriptions.ref(organization_id, external_id, lago_id)
    if owners is None:
        return deps.store.get(this), None
    sub, reads = _read_for_billing(deps, organization_id, owners, this)
    return sub, (reads if sub is not None and _keys_of(sub) == owners else None)


def _read_for_billing(
    deps: Dependencies,
    organization_id: str,
    owners: BillingKeys,
    subscription: Read[Subscription] | None,
) -> tuple[Subscription | None, BillingReads]:
    """Everything billing a subscription reads, in one BatchGetItem: the subscription
    (when asked), its organization, customer and plan, the customer's count of active
    coupons (their Query is needed only when there are some) and the number sequence."""
    store = deps.store
    of_organization = store.organizations.ref(organization_id)
    of_customer = store.customers.ref(organization_id, owners.external_customer_id)
    of_plan = store.plans.ref_by_id(organization_id, owners.plan_lago_id)
    coupon_count = store.applied_coupons.ref_active_count(organization_id, owners.lago_customer_id)
    of_sequence = store.numbering.ref_sequence(organization_id)
    found: Subscription | None = None
    if subscription is None:
        organization, customer, plan, coupons, sequence = store.read(
            of_organization, of_customer, of_plan, coupon_count, of_sequence
        )
    else:
        organization, customer, plan, coupons, sequence, found = store.read(
            of_organization, of_customer, of_plan, coupon_count, of_sequence, subscription
        )
    read = AlreadyRead(
        active_coupons=[] if not coupons else None,
        sequence=sequence or NumberSequence(value=0, held_until=0),  # none issued yet
    )
    return found, (organization, customer, plan, read)


def _after_trial(
    deps: Dependencies,
    sub: Subscription,
    customer: Customer,
    plan: Plan,
    due: datetime,
    timezone: str,
) -> tuple[Subscription, Subscription | None]:
    """A subscription Stripe is to bill once its trial is over: at the trial's end, the
    subscription as decided then, and the handed-over one when Stripe takes it (Stripe
    bills from here on; Billow still walks its life: plan swaps, end)."""
    ends_trial = _trial_end(sub)
    if ends_trial is None or ends_trial > due:
        return sub, None
    owner, reason = billing_owner(deps, customer, plan, trial_over=True)
    sub = sub.model_copy(update={"billed_by": owner, "not_synced_reason": reason})
    if owner != "stripe":
        return sub, None
    return sub, sub.model_copy(
        update={
            "billed_until": iso(due),
            "stripe_starts_at": iso(due),
            "next_billing_at": next_due(sub, plan, due, timezone),
        }
    )


def _cancel_pending_successor(
    deps: Dependencies, change: Change, sub: Subscription, at: datetime
) -> None:
    if not sub.next_subscription_id:
        return
    successor = deps.store.subscriptions.get(
        sub.organization_id, sub.external_id, sub.next_subscription_id
    )
    if successor is not None and successor.status == "pending":
        change.save(
            successor.model_copy(update={"status": "canceled", "canceled_at": iso(at)}), successor
        )


def _swap_plans(
    deps: Dependencies,
    change: Change,
    organization: Organization,
    customer: Customer,
    sub: Subscription,
    plan: Plan,
    successor: Subscription,
    due: datetime,
    invoice_id: str,
) -> tuple[str, datetime | None]:
    """A downgrade takes effect at the period boundary: the old plan's last fee and the new
    plan's first fee share one invoice."""
    new_plan = deps.store.plans.get_by_id(sub.organization_id, successor.plan_lago_id)
    timezone = timezone_of(organization, customer)
    ended, draft = terminate(sub, plan, due, timezone, bill=True)
    if draft:
        change.drafts.append(draft)
    change.bill_usage(sub, plan, due, timezone)
    saved_old = change.save(ended, sub)
    change.events.append(
        subscription_webhook("subscription.terminated", saved_old, plan, customer, due, timezone)
    )
    if new_plan is None:
        change.commit(organization, customer, invoice_id, due, saved_old, plan.amount_currency)
        return "terminated", None
    started, new_draft = activate(
        successor.model_copy(update={"initial_started_at": sub.initial_started_at}),
        new_plan,
        due,
        timezone,
    )
    if new_draft:
        change.drafts.append(new_draft)
    saved_new = change.save(started, successor)
    change.events.append(
        subscription_webhook("subscription.started", saved_new, new_plan, customer, due, timezone)
    )
    change.commit(organization, customer, invoice_id, due, saved_new, new_plan.amount_currency)
    return "downgraded", None  # the successor is due under its own id, at the next run
