"""The AWS resources local mode creates in moto from the topology: each queue with its DLQ,
the rules that feed queues from the bus, and the topics with their inboxes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billow.topology import Queue, Topic, Topology

REGION = "us-east-1"
DLQ_RETENTION_S = 14 * 24 * 3600
_ENVELOPE_FIELDS = (
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
)
EVENT_ENVELOPE = {
    "InputPathsMap": {field: f"$.{field}" for field in _ENVELOPE_FIELDS},
    "InputTemplate": (
        '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
        '"account": "<account>", "time": <time>, "region": "<region>", '
        '"resources": <resources>, "detail": <detail>}'
    ),
}
"""What EventBridge puts on an SQS target untransformed. moto's own default drops
``account``, which consumers parsing the envelope (Powertools' EventBridgeModel) require;
moto turns the numeric ``<time>`` into the ISO timestamp itself."""


@dataclass(frozen=True)
class QueueResources:
    queue: Queue
    url: str
    arn: str
    dlq_url: str


@dataclass(frozen=True)
class TopicResources:
    topic: Topic
    arn: str
    inbox_url: str
    """The SQS queue subscribed to the topic: it stands in for the people subscribed."""


class UnknownTopicError(LookupError):
    pass


@dataclass(frozen=True)
class Resources:
    """What ``create_resources`` made, by the topology's names."""

    stream_arn: str
    queues: dict[str, QueueResources]
    topics: dict[str, TopicResources]


def create_resources(
    topology: Topology,
    clients: dict[str, Any],
    visibility_timeout_s: int | None,
    cleanups: list[Callable[[], object]],
) -> Resources:
    """Create the topology's table, bus, queues, topics and rules in moto. Each creation
    adds its undoing to ``cleanups`` at once, so a failure half-way leaves nothing behind
    once they run (in reverse)."""
    dynamodb, events = clients["dynamodb"], clients["events"]
    table = topology.table
    keys = dict.fromkeys(
        [table.partition_key, table.sort_key]
        + [key for index in table.indexes for key in (index.partition_key, index.sort_key)]
    )
    created = dynamodb.create_table(
        TableName=table.name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": table.partition_key, "KeyType": "HASH"},
            {"AttributeName": table.sort_key, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": (
                    {"ProjectionType": "ALL"}
                    if index.projected is None
                    else {
                        "ProjectionType": "INCLUDE",
                        "NonKeyAttributes": list(index.projected),
                    }
                    if index.projected
                    else {"ProjectionType": "KEYS_ONLY"}
                ),
            }
            for index in table.indexes
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    cleanups.append(lambda: dynamodb.delete_table(TableName=table.name))
    stream_arn = created["TableDescription"]["LatestStreamArn"]
    dynamodb.update_time_to_live(
        TableName=table.name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
    )

    bus = topology.bus_name
    events.create_event_bus(Name=bus)
    cleanups.append(lambda: events.delete_event_bus(Name=bus))

    queues = {
        queue.name: _create_queue(clients["sqs"], queue, visibility_timeout_s, cleanups)
        for queue in topology.queues
    }
    topics = {
        topic.name: _create_topic(clients["sns"], clients["sqs"], topic, cleanups)
        for topic in topology.topics
    }

    for rule in topology.rules:
        events.put_rule(
            Name=rule.name,
            EventBusName=bus,
            EventPattern=json.dumps(rule.event_pattern),
            Description=rule.description,
            State="ENABLED",
        )
        target = {
            "Id": rule.queue,
            "Arn": queues[rule.queue].arn,
            "InputTransformer": EVENT_ENVELOPE,
        }
        events.put_targets(Rule=rule.name, EventBusName=bus, Targets=[target])
        cleanups.append(functools.partial(_delete_rule, events, bus, rule.name, rule.queue))
    return Resources(stream_arn, queues, topics)


def _delete_rule(events: Any, bus: str, name: str, target: str) -> None:
    events.remove_targets(Rule=name, EventBusName=bus, Ids=[target])
    events.delete_rule(Name=name, EventBusName=bus)


def _create_queue(
    sqs: Any, queue: Queue, visibility_timeout_s: int | None, cleanups: list[Callable[[], object]]
) -> QueueResources:
    dlq_url = sqs.create_queue(
        QueueName=f"{queue.name}-dlq",
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
    )["QueueUrl"]
    cleanups.append(lambda: sqs.delete_queue(QueueUrl=dlq_url))
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    visibility = visibility_timeout_s or queue.visibility_timeout_s
    redrive = {
        "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": queue.max_receive_count,
    }
    url = sqs.create_queue(
        QueueName=queue.name,
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    cleanups.append(lambda: sqs.delete_queue(QueueUrl=url))
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return QueueResources(queue, url, arn["Attributes"]["QueueArn"], dlq_url)


def _create_topic(
    sns: Any, sqs: Any, topic: Topic, cleanups: list[Callable[[], object]]
) -> TopicResources:
    """The topic and its inbox: an SQS queue subscribed the way AWS subscribes one
    (not raw), so each message is SNS's JSON notification, subject included."""
    arn = sns.create_topic(Name=topic.name)["TopicArn"]
    cleanups.append(lambda: sns.delete_topic(TopicArn=arn))
    inbox_url = sqs.create_queue(
        QueueName=f"{topic.name}-topic-inbox",
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)},
    )["QueueUrl"]
    cleanups.append(lambda: sqs.delete_queue(QueueUrl=inbox_url))
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["QueueArn"])
    subscription = sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=inbox_arn["Attributes"]["QueueArn"],
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    cleanups.append(lambda: sns.unsubscribe(SubscriptionArn=subscription))
    return TopicResources(topic, arn, inbox_url)
