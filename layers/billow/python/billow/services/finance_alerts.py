"""Telling the finance team about failed payments, and about payments Billow will not
apply, on the ``finance-alerts`` topic.

The consumer reads the same ``invoice.payment_failure`` event the outgoing webhook is
made of (its payload is Lago's webhook envelope) from a queue of its own: an alert that
cannot be sent is retried and dead-lettered there without holding up the webhook, and
the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from billow.adapters.notifications import subject_line
from billow.composition import Dependencies
from billow.domain.events import OutboxEvent
from billow.topology import PAYMENT_FAILURE, PAYMENT_UNMATCHED

TOPIC = "finance-alerts"
OBJECT_TYPE = "payment_provider_invoice_payment_error"
MAX_ERROR_CHARS = 1_000
"""Provider error messages are short; a runaway one must not make the alert unreadable."""

_MINOR_UNIT_DIGITS = {
    **dict.fromkeys(
        (
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "MGA",
            "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
        ),
        0,
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}  # fmt: skip
"""ISO 4217 currencies whose minor unit is not a hundredth; every other one has two."""


@dataclass(frozen=True)
class Alert:
    subject: str
    """One line of at most 100 characters (SNS's limit; the e-mail subject)."""
    message: str


def format_amount(amount_cents: int, currency: str) -> str:
    """Integer minor units as a person reads them: ``1234, "EUR"`` -> ``12.34 EUR``."""
    code = currency.upper()
    digits = _MINOR_UNIT_DIGITS.get(code, 2)
    sign = "-" if amount_cents < 0 else ""
    whole, fraction = divmod(abs(amount_cents), 10**digits)
    decimals = f".{fraction:0{digits}d}" if digits else ""
    return f"{sign}{whole:,}{decimals} {code}"


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _first(*values: Any) -> str | None:
    return next((text for value in values if (text := _text(value)) is not None), None)


def _amount(error: dict[str, Any], invoice: dict[str, Any]) -> str | None:
    """The amount, when the event carries one (Lago's payload itself does not)."""
    for source in (error, invoice):
        currency = _text(source.get("currency") or source.get("amount_currency"))
        for key in ("amount_cents", "total_due_amount_cents", "total_amount_cents"):
            amount = source.get(key)
            if currency and isinstance(amount, int) and not isinstance(amount, bool):
                return format_amount(amount, currency)
    return None


def _provider_error(value: Any) -> tuple[str, str | None]:
    """``provider_error`` is an object (``message``, ``error_code``) or, in Lago, a string."""
    if isinstance(value, dict):
        message = _first(value.get("message"), value.get("error_message"))
        code = _first(value.get("error_code"), value.get("code"), value.get("decline_code"))
    else:
        message, code = _text(value), None
    message = message or "no message from the payment provider"
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return message, code


def _table(rows: list[tuple[str, str]]) -> str:
    """Labelled lines, values aligned: readable in a plain-text e-mail."""
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in rows)


def payment_failure_alert(event: OutboxEvent) -> Alert:
    """A short subject and a plain-text message about one failed payment.

    Reads Lago's ``invoice.payment_failure`` envelope; every field is optional here, so
    an incomplete event still makes a (less detailed) alert rather than no alert.
    """
    payload = event.payload
    raw_error = payload.get(OBJECT_TYPE)
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    raw_invoice = error.get("invoice")
    invoice: dict[str, Any] = raw_invoice if isinstance(raw_invoice, dict) else {}

    organization = _first(payload.get("organization_id"), event.organization_id)
    customer = _first(error.get("external_customer_id"), invoice.get("external_customer_id"))
    invoice_id = _first(error.get("lago_invoice_id"), invoice.get("lago_id"))
    number = _first(error.get("invoice_number"), invoice.get("number"))
    amount = _amount(error, invoice)
    provider = _first(error.get("payment_provider"))
    connection = _first(error.get("payment_provider_code"))
    provider_customer = _first(error.get("provider_customer_id"))
    message, code = _provider_error(error.get("provider_error"))

    subject = "Payment failed"
    if amount:
        subject += f": {amount}"
    subject += f" from customer {customer or 'unknown'}"
    if number or invoice_id:
        subject += f", invoice {number or invoice_id}"

    customer_line = customer or "unknown"
    details = [
        f"Lago id {error['lago_customer_id']}" if _text(error.get("lago_customer_id")) else "",
        f"{provider} customer {provider_customer}" if provider_customer else "",
    ]
    if any(details):
        customer_line += f" ({'; '.join(d for d in details if d)})"
    invoice_line = f"{number} ({invoice_id})" if number and invoice_id else number or invoice_id
    provider_line = (provider or "unknown") + (
        f' (connection "{connection}")' if connection else ""
    )

    rows = [
        ("Organization", organization or "unknown"),
        ("Customer", customer_line),
        ("Invoice", invoice_line or "not given"),
        ("Amount", amount or "not given"),
        ("Payment provider", provider_line),
        ("Provider error", message + (f" (code: {code})" if code else "")),
        ("Failed at", event.occurred_at),
        ("Billow event", event.event_id),
    ]
    body = _table(rows)
    text = (
        f"A payment attempt for an invoice failed at {provider or 'the payment provider'}."
        f"\n\n{body}\n\n"
        "The invoice stays unpaid until a later payment attempt succeeds. The organization's\n"
        "webhook endpoints get the same event as an invoice.payment_failure webhook.\n"
    )
    return Alert(subject=subject_line(subject), message=text)


_UNMATCHED_REASONS = {
    "other_invoice": "it names another invoice",
    "unknown_attempt": "it names a charge attempt Billow never made",
    "not_created_by_billow": "Billow did not create it (no attempt, not a payment link)",
    "customer_mismatch": "it charged another Stripe customer than the invoice's",
    "currency_mismatch": "its currency is not the invoice's",
    "amount_mismatch": "its amount is not the invoice's total",
}


def unmatched_payment_alert(event: OutboxEvent) -> Alert:
    """A Stripe PaymentIntent names an invoice but does not pay it: Billow kept the invoice
    as it was, and someone must look at the money (or the failure) in Stripe."""
    payload = event.payload
    reason = _text(payload.get("reason")) or "unknown"
    amount = _amount(payload, {})
    number = _first(payload.get("invoice_number"), payload.get("lago_invoice_id"))
    expected = _amount(
        {
            "amount_cents": payload.get("invoice_total_amount_cents"),
            "currency": payload.get("invoice_currency"),
        },
        {},
    )
    payment = f"{payload.get('provider_payment_id')} ({payload.get('provider_payment_status')})"
    rows = [
        ("Organization", _first(event.organization_id) or "unknown"),
        ("Invoice", f"{number} ({payload.get('lago_invoice_id')})"),
        ("Invoice total", expected or "not given"),
        ("Customer", _first(payload.get("external_customer_id")) or "unknown"),
        ("Stripe payment", payment),
        ("Payment amount", amount or "not given"),
        ("Stripe customer", _first(payload.get("provider_customer_id")) or "none"),
        ("Why", _UNMATCHED_REASONS.get(reason, reason)),
        ("Seen at", event.occurred_at),
        ("Billow event", event.event_id),
    ]
    text = (
        "Stripe reported a payment that names an invoice but does not pay it. Billow did "
        "not apply it:\nthe invoice is unchanged. Check the payment in Stripe and refund or "
        f"reassign it by hand.\n\n{_table(rows)}\n"
    )
    subject = f"Payment not applied: {amount or 'a payment'} naming invoice {number}"
    return Alert(subject=subject_line(subject), message=text)


_ALERTS = {PAYMENT_FAILURE: payment_failure_alert, PAYMENT_UNMATCHED: unmatched_payment_alert}


def alert_once(deps: Dependencies, event: OutboxEvent, lambda_context: LambdaContext) -> None:
    """Publish the alert for one failed (or unmatched) payment at most once per event.

    SNS standard topics do not de-duplicate, and SQS (like EventBridge) delivers at least
    once; the idempotency record, keyed by the event id, turns a redelivered message into
    a no-op. A failed publish leaves no record, so the queue's retries (and a redrive
    from the DLQ) publish it again.
    """
    if event.event_type not in _ALERTS:
        return  # the rule routes only these; anything else is not ours
    config = IdempotencyConfig(event_key_jmespath="event_id", expires_after_seconds=24 * 3600)
    config.register_lambda_context(lambda_context)

    @idempotent_function(
        data_keyword_argument="request",
        persistence_store=deps.idempotency("finance_alerts"),
        config=config,
    )
    def publish(request: dict[str, Any]) -> str:
        received = OutboxEvent.model_validate(request)
        alert = _ALERTS[received.event_type](received)
        return deps.notifications.publish(TOPIC, alert.subject, alert.message)

    publish(request=event.model_dump(mode="json"))
