"""The aggregator folds each event once, however Lambda delivers the stream.

Lambda delivers a DynamoDB stream batch again when an invocation fails or is cut short
(a timeout, a crash after a chunk was written), from the first record it was told was
not processed. These tests play such deliveries to the real handler with the records
the table's stream carries for new events, and check the counts stay exact.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Any

from billow.adapters.table import packed
from billow.domain.clock import new_id
from billow.domain.usage import UsageEvent, iso_ms
from tests.api.test_usage_billing import (
    by_metric,
    charge,
    current_usage,
    metric,
    subscribe,
    usage_plan,
)


def stream_record(event: UsageEvent, sequence: int) -> dict[str, Any]:
    """An INSERT record of the event's item, as Lambda passes it (binary base64-encoded)."""
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "NewImage": {
                "kind": {"S": "usage_event"},
                "data": {"B": base64.b64encode(packed(event)).decode()},
            },
            "SequenceNumber": f"{sequence:021d}",
            "StreamViewType": "NEW_IMAGE",
        },
    }


def events_for(org: Any, external_id: str, code: str, at: datetime, count: int) -> list[UsageEvent]:
    return [
        UsageEvent(
            lago_id=new_id(),
            organization_id=org.id,
            transaction_id=f"{code}-{n}",
            external_subscription_id=external_id,
            code=code,
            timestamp=iso_ms(at + timedelta(seconds=n)),
            properties={"user": f"user-{n}"},
            created_at=iso_ms(at),
        )
        for n in range(count)
    ]


def test_a_batch_delivered_again_after_part_of_it_was_folded_counts_each_event_once(
    local_billow: Any, org: Any
) -> None:
    calls = metric(org, "calls", "count_agg")
    users = metric(org, "users", "unique_count_agg", field_name="user")
    plan = usage_plan(
        org,
        "api",
        [
            charge(calls, "standard", properties={"amount": "1"}),
            charge(users, "standard", properties={"amount": "1"}),
        ],
    )
    subscription = subscribe(org, plan, "api-1")
    started = datetime.fromisoformat(subscription["started_at"])
    # Each unique count event changes two items (the aggregate and its value's mark), so
    # 100 of them take three transactions: a crash can fall between any two.
    records = [
        stream_record(event, n)
        for n, event in enumerate(
            events_for(org, "api-1", "users", started, 100)
            + events_for(org, "api-1", "calls", started, 30)
        )
    ]

    first = local_billow.invoke("usage_aggregator", {"Records": records[:60]})
    assert first == {"batchItemFailures": []}
    # Lambda never heard back (a timeout): it delivers everything again, and more.
    again = local_billow.invoke("usage_aggregator", {"Records": records})
    assert again == {"batchItemFailures": []}
    once_more = local_billow.invoke("usage_aggregator", {"Records": records})
    assert once_more == {"batchItemFailures": []}

    usage = by_metric(current_usage(org, subscription))
    assert (usage["users"]["units"], usage["users"]["events_count"]) == ("100", 100)
    assert (usage["calls"]["units"], usage["calls"]["events_count"]) == ("30", 30)
