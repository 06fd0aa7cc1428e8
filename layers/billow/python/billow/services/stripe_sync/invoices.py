"""Stripe Billing's invoices for synced subscriptions, copied into Billow.

``GET /api/v1/invoices`` then shows every invoice a customer received, whoever issued
it. Each ``invoice.*`` event carries the invoice as it was; a Stripe invoice only moves
forward (draft, open, then paid, void or uncollectible, with more payment attempts on
the way), so a copy is replaced only by a later stage of it, and a late or repeated
event never undoes a newer fact, without asking Stripe. The copy's id is derived from
the Stripe invoice's, so two deliveries make one invoice. The copy is read-only: Stripe
charges it and retries it (Billow's dunning leaves it be, as it is not payable here),
but a failed payment still reaches the organization as ``invoice.payment_failure``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.catalog import Plan
from billow.domain.clock import iso, stable_id, utcnow
from billow.domain.integrations import StripeConnection
from billow.domain.invoices import Fee, FeeItem, Invoice, StripeInvoiceLink
from billow.domain.payments import Applied
from billow.domain.subscriptions import Subscription
from billow.services.payments.records import invoice_webhook, payment_failure_event
from billow.services.retries import retry_on_race

_STAGES = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def _stage(status: str, attempts: int) -> tuple[int, int]:
    return _STAGES.get(status, 0), attempts


def _moment(stamp: Any) -> str:
    return iso(datetime.fromtimestamp(int(stamp), UTC))


def owner_of(
    deps: Dependencies, organization_id: str, stripe_invoice: dict[str, Any]
) -> Subscription | None:
    """The Billow subscription the Stripe subscription bills (its external id is in the
    metadata Stripe copies onto its invoices; the live one first, as after an upgrade).
    A checkout's first invoice comes before the completed page links the two: the
    subscription the page was opened for (``billow_id``) owns it."""
    details = (stripe_invoice.get("parent") or {}).get("subscription_details") or {}
    metadata = details.get("metadata") or {}
    external_id = metadata.get("billow_external_id")
    if not isinstance(external_id, str):
        return None
    history = deps.store.subscriptions.list_for_external_id(organization_id, external_id)
    billing = [sub for sub in history if sub.stripe_subscription_id == details.get("subscription")]
    checkout = [
        sub
        for sub in history
        if sub.lago_id == metadata.get("billow_id")
        and sub.checkout is not None
        and sub.stripe_subscription_id is None
    ]
    return next(
        (sub for sub in billing if sub.is_live),
        billing[-1] if billing else next(iter(checkout), None),
    )


def _copy(
    stripe_invoice: dict[str, Any],
    sub: Subscription,
    plan: Plan | None,
    lago_id: str,
    existing: Invoice | None,
) -> Invoice:
    status = stripe_invoice["status"]
    total, paid = int(stripe_invoice["total"]), int(stripe_invoice.get("amount_paid") or 0)
    subtotal = int(stripe_invoice.get("subtotal") or total)
    discounts = sum(int(d["amount"]) for d in stripe_invoice.get("total_discount_amounts") or [])
    excluding = subtotal - discounts
    failed = status == "open" and int(stripe_invoice.get("attempt_count") or 0) > 0
    created = _moment(stripe_invoice["created"])
    fees = [
        Fee(
            lago_id=stable_id("stripe-invoice-line", lago_id, str(line["id"])),
            item=FeeItem(
                type="subscription",
                code=plan.code if plan else sub.plan_code,
                name=plan.name if plan else sub.plan_code,
                invoice_display_name=plan.invoice_display_name if plan else None,
                lago_item_id=sub.lago_id,
            ),
            amount_cents=int(line["amount"]),
            unit_amount_cents=int(line["amount"]),
            total_amount_cents=int(line["amount"]),
            from_date=_moment(line["period"]["start"]),
            to_date=_moment(int(line["period"]["end"]) - 1),
            lago_subscription_id=sub.lago_id,
            external_subscription_id=sub.external_id,
            pay_in_advance=True,
            description=line.get("description"),
        )
        for line in (stripe_invoice.get("lines") or {}).get("data") or []
    ]
    return Invoice(
        lago_id=lago_id,
        organization_id=sub.organization_id,
        sequential_id=0,
        number=str(stripe_invoice.get("number") or stripe_invoice["id"]),
        invoice_type="subscription",
        status="draft" if status == "draft" else "voided" if status == "void" else "finalized",
        payment_status="succeeded" if status == "paid" else "failed" if failed else "pending",
        currency=str(stripe_invoice["currency"]).upper(),
        issuing_date=created[:10],
        payment_due_date=created[:10],
        lago_customer_id=sub.lago_customer_id,
        external_customer_id=sub.external_customer_id,
        fees=fees,
        fees_amount_cents=subtotal,
        coupons_amount_cents=discounts,
        taxes_amount_cents=total - excluding,
        sub_total_excluding_taxes_amount_cents=excluding,
        sub_total_including_taxes_amount_cents=total,
        total_amount_cents=total,
        total_paid_amount_cents=paid,
        subscription_ids=[sub.lago_id],
        billing_period=(fees[0].from_date or "", fees[-1].to_date or "") if fees else None,
        created_at=existing.created_at if existing else created,
        updated_at=iso(utcnow()),
        version=existing.version if existing else 0,
        stripe_invoice=StripeInvoiceLink(
            id=str(stripe_invoice["id"]),
            hosted_invoice_url=stripe_invoice.get("hosted_invoice_url"),
            invoice_pdf=stripe_invoice.get("invoice_pdf"),
            status=status,
            attempt_count=int(stripe_invoice.get("attempt_count") or 0),
        ),
    )


def mirror_invoice(
    deps: Dependencies, connection: StripeConnection, current: dict[str, Any]
) -> Applied:
    """Copy the Stripe invoice an event carries (as it was when the event was made)."""
    organization_id = connection.organization_id
    sub = owner_of(deps, organization_id, current)
    if sub is None:
        return "ignored"  # not an invoice of a subscription Billow synced
    plan = deps.store.plans.get_by_id(organization_id, sub.plan_lago_id)
    customer = deps.store.customers.get(organization_id, sub.external_customer_id)
    lago_id = stable_id("stripe-invoice", organization_id, str(current["id"]))

    def upsert() -> None:
        existing = deps.store.invoices.get(organization_id, lago_id)
        known = existing.stripe_invoice if existing else None
        arrived = _stage(str(current["status"]), int(current.get("attempt_count") or 0))
        if known is not None and arrived < _stage(known.status, known.attempt_count):
            return  # an earlier stage, delivered late
        copied = _copy(current, sub, plan, lago_id, existing)
        if (
            existing is not None
            and copied.model_copy(update={"updated_at": existing.updated_at}) == existing
        ):
            return
        saved = copied.model_copy(update={"version": existing.version + 1 if existing else 0})
        events = []
        if existing is None:
            events.append(invoice_webhook(saved, customer, "invoice.created"))
        elif existing.payment_status != saved.payment_status:
            events.append(invoice_webhook(saved, customer, "invoice.payment_status_updated"))
        if saved.payment_status == "failed" and (
            existing is None or existing.payment_status != "failed"
        ):
            events.append(
                payment_failure_event(
                    saved,
                    customer,
                    connection.code,
                    {
                        "message": "Stripe could not charge the invoice; Stripe retries it",
                        "error_code": "invoice_payment_failed",
                    },
                    {"stripe_invoice_id": str(current["id"])},
                )
            )
        transaction = Transaction()
        deps.store.invoices.stage(transaction, saved, existing)
        transaction.publish(events)
        deps.store.commit(transaction)

    retry_on_race(upsert)
    return "processed"
