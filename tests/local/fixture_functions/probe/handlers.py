"""Probe handlers for the local runtime's own tests: each records what it was given."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import probe_log

from billow.settings import Settings


def http(event: dict[str, Any], context: Any) -> Any:
    probe_log.record("http", event, context)
    if event["routeKey"] == "$default":
        error = {"status": 404, "error": "Not Found", "code": "route_not_found"}
        return {"statusCode": 404, "body": json.dumps(error)}
    if event["rawPath"] == "/infer":
        return {"inferred": True}
    if event["rawPath"] == "/binary":
        body = base64.b64decode(event["body"]) if event["isBase64Encoded"] else b""
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(body[::-1]).decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-probe": "yes"},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps({"route": event["routeKey"]}),
    }


def boom(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("the probe handler failed on purpose")


def jobs(event: dict[str, Any], context: Any) -> Any:
    probe_log.record("jobs", event, context)
    failed = [
        {"itemIdentifier": record["messageId"]}
        for record in event["Records"]
        if json.loads(record["body"])["detail"]["job"] in probe_log.failing_jobs
    ]
    return {"batchItemFailures": failed}


def outbox(event: dict[str, Any], context: Any) -> Any:
    probe_log.record("outbox", event, context)
    for record in event["Records"]:
        key = record["dynamodb"]["Keys"]["SK"]["S"]
        if key in probe_log.failing_once:
            probe_log.failing_once.discard(key)
            return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}


def tick(event: dict[str, Any], context: Any) -> Any:
    probe_log.record("tick", event, context)
    return {"schedule": event["schedule"], "now": event["time"]}


def notify(event: dict[str, Any], context: Any) -> Any:
    """Sends to its ``sends_to`` queue and publishes to its ``publishes_to`` topic, finding
    both the way Billow's functions do (``Settings.queue_urls`` / ``topic_arns``)."""
    probe_log.record("notify", event, context)
    settings = Settings.from_env()
    boto3.client("sqs").send_message(
        QueueUrl=settings.queue_urls["probe-jobs"],
        MessageBody=json.dumps({"detail": {"job": f"notified {event['time']}"}}),
    )
    published = boto3.client("sns").publish(
        TopicArn=settings.topic_arns["probe-alerts"],
        Subject=f"tick {event['time']}",
        Message=json.dumps({"time": event["time"]}),
    )
    return {"message_id": published["MessageId"]}
