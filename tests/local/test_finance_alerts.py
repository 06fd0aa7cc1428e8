"""Failed payments reach the finance team's topic, once, through the real path: an outbox
item written with the store's transaction, the stream, the publisher, the bus, the
``finance-alerts`` rule and queue, and Billow's own consumer publishing to SNS."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from billow.adapters.table import Transaction
from billow.composition import dependencies
from billow.domain.events import OutboxEvent, webhook_event
from billow.services.finance_alerts import format_amount, payment_failure_alert
from billow.topology import EVENT_SOURCE, PAYMENT_FAILURE, TOPOLOGY
from local.runtime import LocalRuntime
from tests.conftest import Org, WebhookReceiver, wait_for

TOPIC = "finance-alerts"
OBJECT_TYPE = "payment_provider_invoice_payment_error"


def payment_failure(organization_id: str, **extra: object) -> OutboxEvent:
    """The ``invoice.payment_failure`` event, with Lago's webhook payload."""
    return webhook_event(
        organization_id,
        PAYMENT_FAILURE,
        OBJECT_TYPE,
        {
            "lago_invoice_id": str(uuid.uuid4()),
            "lago_customer_id": str(uuid.uuid4()),
            "external_customer_id": f"acme-{uuid.uuid4().hex[:6]}",
            "provider_customer_id": "cus_test123",
            "payment_provider": "stripe",
            "payment_provider_code": "stripe-prod",
            "provider_error": {"message": "Your card was declined.", "error_code": "card_declined"},
            **extra,
        },
    )


def write_to_outbox(event: OutboxEvent) -> None:
    """What every Billow service does: the event goes into the table's outbox."""
    transaction = Transaction()
    transaction.publish([event])
    dependencies().store.commit(transaction)


def alerts_for(runtime: LocalRuntime, event: OutboxEvent) -> list[dict[str, Any]]:
    return [m for m in runtime.topic_messages(TOPIC) if event.event_id in m["Message"]]


def webhooks_for(receiver: WebhookReceiver, event: OutboxEvent) -> list[Any]:
    return [r for r in receiver.requests if r.headers["X-Lago-Unique-Key"] == event.event_id]


def aws(runtime: LocalRuntime, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=runtime.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def receiver(org: Org, webhook_receiver: WebhookReceiver) -> WebhookReceiver:
    status, body = org.api.post(
        "/webhook_endpoints", json={"webhook_endpoint": {"webhook_url": webhook_receiver.url}}
    )
    assert status == 200, body
    return webhook_receiver


def test_a_failed_payment_alerts_the_finance_team(
    local_billow: LocalRuntime, org: Org, receiver: WebhookReceiver
) -> None:
    event = payment_failure(org.id)
    error = event.payload[OBJECT_TYPE]
    assert isinstance(error, dict)

    write_to_outbox(event)

    [alert] = wait_for(lambda: alerts_for(local_billow, event))
    assert alert["TopicArn"] == os.environ["BILLOW_TOPIC_ARN_FINANCE_ALERTS"]
    subject, message = alert["Subject"], alert["Message"]
    assert len(subject) <= 100 and "\n" not in subject
    assert subject.startswith("Payment failed")
    assert error["external_customer_id"] in subject
    assert error["lago_invoice_id"] in subject
    for fact in (
        org.id,
        error["lago_invoice_id"],
        error["external_customer_id"],
        error["lago_customer_id"],
        "Your card was declined.",
        "card_declined",
        "stripe-prod",
    ):
        assert fact in message, fact
    # The same event, from its own queue, is the organization's webhook.
    [webhook] = wait_for(lambda: webhooks_for(receiver, event))
    assert webhook.json() == event.payload


def test_a_redelivered_event_alerts_once(
    local_billow: LocalRuntime, org: Org, receiver: WebhookReceiver
) -> None:
    event = payment_failure(org.id, invoice_number="ACME-2030-0042")
    write_to_outbox(event)
    wait_for(lambda: alerts_for(local_billow, event))

    # EventBridge and SQS deliver at least once: the same event arrives again.
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": event.event_type,
        "Detail": event.model_dump_json(),
        "EventBusName": TOPOLOGY.bus_name,
    }
    assert aws(local_billow, "events").put_events(Entries=[entry])["FailedEntryCount"] == 0
    local_billow.wait_idle()

    [alert] = alerts_for(local_billow, event)
    assert "ACME-2030-0042" in alert["Subject"]
    assert len(webhooks_for(receiver, event)) == 1
    assert not [body for body in local_billow.dlq_messages(TOPIC) if event.event_id in body]


@contextlib.contextmanager
def topic_deleted(runtime: LocalRuntime) -> Iterator[None]:
    """The finance topic deleted in moto, so every publish to it fails (no Billow code is
    mocked); restored afterwards, with the runtime's inbox subscribed again."""
    sns = aws(runtime, "sns")
    arn = os.environ["BILLOW_TOPIC_ARN_FINANCE_ALERTS"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert [s["Protocol"] for s in subscriptions] == ["sqs"]
    sns.delete_topic(TopicArn=arn)
    try:
        yield
    finally:
        assert sns.create_topic(Name=TOPIC)["TopicArn"] == arn
        for subscription in subscriptions:
            sns.subscribe(
                TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"]
            )


def test_a_failing_alert_consumer_does_not_hold_up_the_webhook(
    local_billow: LocalRuntime, org: Org, receiver: WebhookReceiver
) -> None:
    event = payment_failure(org.id)

    with topic_deleted(local_billow):
        write_to_outbox(event)
        # The webhook goes out while the alert consumer keeps failing on its own queue ...
        wait_for(lambda: webhooks_for(receiver, event))
        # ... until its message lands in that queue's DLQ, where it stays replayable.
        wait_for(
            lambda: [b for b in local_billow.dlq_messages(TOPIC) if event.event_id in b],
            timeout=60,
        )
        local_billow.wait_idle()
    assert alerts_for(local_billow, event) == []
    assert len(webhooks_for(receiver, event)) == 1

    # Failed attempts left no idempotency record behind: the replay publishes the alert.
    assert local_billow.redrive_dlq(TOPIC) >= 1
    local_billow.wait_idle()

    assert len(alerts_for(local_billow, event)) == 1
    assert len(webhooks_for(receiver, event)) == 1
    assert not [b for b in local_billow.dlq_messages(TOPIC) if event.event_id in b]


# -- the alert's wording, without the runtime ------------------------------------------------


def test_alert_reads_lagos_payload_and_optional_invoice_details() -> None:
    event = payment_failure(
        "org-1",
        external_customer_id="acme-42",
        lago_invoice_id="inv-1",
        invoice_number="ACME-0001",
        amount_cents=1234567,
        currency="EUR",
    )

    alert = payment_failure_alert(event)

    assert alert.subject == "Payment failed: 12,345.67 EUR from customer acme-42, invoice ACME-0001"
    lines = dict(
        (label.strip(), value.strip())
        for label, _, value in (line.partition(":") for line in alert.message.splitlines())
        if value
    )
    assert lines["Organization"] == "org-1"
    assert lines["Invoice"] == "ACME-0001 (inv-1)"
    assert lines["Amount"] == "12,345.67 EUR"
    assert lines["Provider error"] == "Your card was declined. (code: card_declined)"
    assert lines["Billow event"] == event.event_id


def test_alert_subject_stays_within_snss_limit_and_string_errors_are_read() -> None:
    event = payment_failure("org-1", external_customer_id="x" * 300, provider_error="boom\nagain")

    alert = payment_failure_alert(event)

    assert len(alert.subject) <= 100 and alert.subject.endswith("...")
    assert "boom\nagain" in alert.message


def test_amounts_use_each_currencys_minor_unit() -> None:
    assert format_amount(500, "jpy") == "500 JPY"
    assert format_amount(1234, "KWD") == "1.234 KWD"
    assert format_amount(-5, "USD") == "-0.05 USD"
    assert format_amount(100_000_00, "eur") == "100,000.00 EUR"
