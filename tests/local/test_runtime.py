"""The local runtime itself, driven with a throwaway topology and probe handlers that record
what they receive (none of Billow's own functions are involved)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import importlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from billow.topology import (
    TOPOLOGY,
    Function,
    Queue,
    Route,
    Rule,
    Schedule,
    StreamConsumer,
    Topic,
    Topology,
)
from local.api_gateway import MAX_PAYLOAD_BYTES, RouteTable
from local.lambda_invocation import Activity
from local.resources import UnknownTopicError
from local.runtime import LocalRuntime, check_declaration
from local.scheduling import ScheduleTimeOutOfRangeError, UnknownScheduleError
from local.stream_tailing import StreamTailer
from tests.conftest import http_json

FIXTURES = Path(__file__).parent / "fixture_functions"


def _function(name: str, **declared: Any) -> Function:
    return Function(
        name=name,
        code="probe",
        handler=f"handlers.{name}",
        description=name,
        calls_stripe=False,
        **declared,
    )


PROBE = Topology(
    table=TOPOLOGY.table.model_copy(update={"name": "billow-local-probe"}),
    bus_name="billow-local-probe",
    functions=(
        *(_function(name) for name in ("http", "boom", "jobs", "outbox", "tick")),
        _function("notify", sends_to=("probe-jobs",), publishes_to=("probe-alerts",)),
    ),
    routes=(
        Route(method="GET", path="/items", function="http"),
        Route(method="GET", path="/items/{item_id}", function="http"),
        Route(method="POST", path="/items/{item_id}/notes/{note_id}", function="http"),
        Route(method="ANY", path="/files/{proxy+}", function="http"),
        Route(method="POST", path="/binary", function="http"),
        Route(method="GET", path="/infer", function="http"),
        Route(method="GET", path="/boom", function="boom"),
        Route(method="ANY", path="$default", function="http"),
    ),
    queues=(Queue(name="probe-jobs", consumer="jobs", batch_size=5, max_receive_count=2),),
    rules=(
        Rule(
            name="probe-jobs",
            description="jobs go to their queue",
            event_pattern={"source": ["probe"], "detail-type": ["job.requested"]},
            queue="probe-jobs",
        ),
    ),
    schedules=(
        Schedule(name="probe-tick", expression="rate(1 hour)", function="tick", description="t"),
        Schedule(
            name="probe-notify", expression="rate(1 hour)", function="notify", description="n"
        ),
    ),
    stream_consumers=(
        StreamConsumer(
            function="outbox",
            filter_pattern={
                "eventName": ["INSERT"],
                "dynamodb": {"NewImage": {"kind": {"S": ["outbox"]}}},
            },
            max_retry_attempts=3,
        ),
    ),
    topics=(Topic(name="probe-alerts", description="what the notify probe publishes"),),
)


@pytest.fixture(scope="module")
def probe_log() -> Iterator[ModuleType]:
    """The handlers' own ``probe_log`` module: imported by the name they import it by."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURES / "probe"))
        yield importlib.import_module("probe_log")


@pytest.fixture(scope="module")
def runtime(probe_log: ModuleType) -> Iterator[LocalRuntime]:
    with LocalRuntime(topology=PROBE, functions_root=FIXTURES, visibility_timeout_s=1) as started:
        yield started


@pytest.fixture
def probe(probe_log: ModuleType, runtime: LocalRuntime) -> ModuleType:
    runtime.wait_idle()
    probe_log.reset()
    return probe_log


def _client(runtime: LocalRuntime, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=runtime.aws_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _request(
    runtime: LocalRuntime,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(runtime.api_url.removeprefix("http://"), timeout=30)
    connection.request(method, target, body=body, headers=headers or {})
    return connection.getresponse()


def _put_jobs(runtime: LocalRuntime, *jobs: str, detail_type: str = "job.requested") -> None:
    entries = [
        {
            "Source": "probe",
            "DetailType": detail_type,
            "Detail": json.dumps({"job": job}),
            "EventBusName": PROBE.bus_name,
        }
        for job in jobs
    ]
    assert _client(runtime, "events").put_events(Entries=entries)["FailedEntryCount"] == 0


def _job_records(probe: ModuleType) -> list[dict[str, Any]]:
    return [record for event in probe.events("jobs") for record in event["Records"]]


def _job(record: dict[str, Any]) -> str:
    job: str = json.loads(record["body"])["detail"]["job"]
    return job


# -- API Gateway ----------------------------------------------------------------------------


def test_routes_pick_the_most_specific_match_like_http_apis() -> None:
    table = RouteTable(
        [
            Route(method="GET", path="/a/{x}", function="f"),
            Route(method="ANY", path="/a/{x}", function="f"),
            Route(method="GET", path="/a/{proxy+}", function="f"),
            Route(method="GET", path="/{y}/b", function="f"),
            Route(method="GET", path="/a/b", function="f"),
            Route(method="ANY", path="$default", function="f"),
        ]
    )

    def key(method: str, path: str) -> tuple[str, dict[str, str]]:
        match = table.match(method, path)
        assert match is not None
        return match.route.key, match.path_parameters

    assert key("GET", "/a/b") == ("GET /a/b", {})
    assert key("GET", "/a/c") == ("GET /a/{x}", {"x": "c"})
    assert key("DELETE", "/a/c") == ("ANY /a/{x}", {"x": "c"})
    assert key("GET", "/z/b") == ("GET /{y}/b", {"y": "z"})
    assert key("GET", "/a/b/c%20d") == ("GET /a/{proxy+}", {"proxy": "b/c d"})
    assert key("GET", "/a/") == ("$default", {})
    assert key("GET", "/elsewhere") == ("$default", {})
    assert RouteTable([Route(method="GET", path="/a", function="f")]).match("GET", "/b") is None


def test_gateway_sends_a_v2_event_and_writes_the_response_back(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    response = _request(
        runtime,
        "GET",
        "/items/abc%20d?x=1&x=2&empty=",
        headers={"Cookie": "a=1; b=2", "X-Custom": "v", "User-Agent": "probe-agent"},
    )

    assert response.status == 201
    assert json.loads(response.read()) == {"route": "GET /items/{item_id}"}
    assert response.headers["x-probe"] == "yes"
    assert response.headers.get_all("set-cookie") == ["session=abc; Path=/", "theme=dark"]
    assert response.headers["apigw-requestid"]
    [(event, context)] = probe.calls("http")
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{item_id}"
    assert event["rawPath"] == "/items/abc d"
    assert event["rawQueryString"] == "x=1&x=2&empty="
    assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
    assert event["pathParameters"] == {"item_id": "abc d"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-custom"] == "v"
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    request_context = event["requestContext"]
    assert request_context["http"] == {
        "method": "GET",
        "path": "/items/abc d",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "probe-agent",
    }
    assert request_context["routeKey"] == "GET /items/{item_id}"
    assert request_context["stage"] == "$default"
    assert request_context["accountId"] == "123456789012"
    assert request_context["requestId"] == response.headers["apigw-requestid"]
    assert {"apiId", "domainName", "time", "timeEpoch"} <= request_context.keys()
    assert context.function_name == "http"
    assert context.invoked_function_arn.endswith(":function:http")
    assert context.memory_limit_in_mb == 256
    assert context.aws_request_id
    assert context.log_group_name == "/aws/lambda/http"
    assert 0 < context.get_remaining_time_in_millis() <= 30_000


def test_path_parameters_json_bodies_and_greedy_paths(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    status, _ = http_json("POST", f"{runtime.api_url}/items/7/notes/n-1", {"text": "hello"})
    assert status == 201
    status, _ = http_json("DELETE", f"{runtime.api_url}/files/a/b.txt")
    assert status == 201

    note, file = probe.events("http")
    assert note["pathParameters"] == {"item_id": "7", "note_id": "n-1"}
    assert note["isBase64Encoded"] is False
    assert json.loads(note["body"]) == {"text": "hello"}
    assert file["routeKey"] == "ANY /files/{proxy+}"
    assert file["pathParameters"] == {"proxy": "a/b.txt"}


@pytest.mark.parametrize(
    ("target", "route", "raw_path", "parameters"),
    [
        ("/items/a%20b", "GET /items/{item_id}", "/items/a b", {"item_id": "a b"}),
        ("/items/%CE%BB%F0%9F%98%80", "GET /items/{item_id}", "/items/λ😀", {"item_id": "λ😀"}),
        ("/items/a%23b", "GET /items/{item_id}", "/items/a#b", {"item_id": "a#b"}),
        ("/items/a%2Fb", "$default", "/items/a/b", None),
        ("/items/a%3Fb?x=1", "GET /items/{item_id}", "/items/a", {"item_id": "a"}),
        ("/items/a%252Fb", "GET /items/{item_id}", "/items/a/b", {"item_id": "a/b"}),
        ("/items/a%2541", "GET /items/{item_id}", "/items/aA", {"item_id": "aA"}),
        ("/items/a%2525b", "GET /items/{item_id}", "/items/a%b", {"item_id": "a%b"}),
        ("/items/a%25zz", "GET /items/{item_id}", "/items/a%zz", {"item_id": "a%zz"}),
    ],
)
def test_paths_are_decoded_as_http_apis_decode_them(
    runtime: LocalRuntime,
    probe: ModuleType,
    target: str,
    route: str,
    raw_path: str,
    parameters: dict[str, str] | None,
) -> None:
    """Decoded once to route (a decoded ``/`` splits, a decoded ``?`` ends the path), and
    once more for the Lambda; the query string stays as sent."""
    _request(runtime, "GET", target).read()
    [event] = probe.events("http")
    assert (event["routeKey"], event["rawPath"]) == (route, raw_path)
    assert event["requestContext"]["http"]["path"] == raw_path
    assert event.get("pathParameters") == parameters
    assert event["rawQueryString"] == target.partition("?")[2]


def test_a_path_the_second_decoding_cannot_finish_is_refused_by_the_gateway(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    """``%25do`` decodes to ``%do``, which does not decode again: API Gateway answers 400."""
    response = _request(runtime, "GET", "/items/percent%25done")
    assert (response.status, json.loads(response.read())) == (400, {"message": "Bad Request"})
    assert probe.events("http") == []


def test_binary_bodies_travel_base64_encoded(runtime: LocalRuntime, probe: ModuleType) -> None:
    payload = bytes(range(256))
    response = _request(
        runtime, "POST", "/binary", payload, {"Content-Type": "application/octet-stream"}
    )

    assert response.status == 200
    assert response.read() == payload[::-1]
    [event] = probe.events("http")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_default_route_and_inferred_responses(runtime: LocalRuntime, probe: ModuleType) -> None:
    status, body = http_json("GET", f"{runtime.api_url}/nowhere/at/all")
    assert (status, body["code"]) == (404, "route_not_found")
    assert probe.events("http")[0]["routeKey"] == "$default"

    response = _request(runtime, "GET", "/infer")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.read()) == {"inferred": True}


def test_a_raising_handler_is_a_500(
    runtime: LocalRuntime, probe: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="local"):
        status, body = http_json("GET", f"{runtime.api_url}/boom")

    assert (status, body) == (500, {"message": "Internal Server Error"})
    assert "the probe handler failed on purpose" in caplog.text


def test_payloads_over_10_mb_are_refused_before_any_handler(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    host, port = runtime.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST /items/1/notes/2 HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {MAX_PAYLOAD_BYTES + 1}\r\n\r\n".encode()
        )
        answer = connection.recv(4096)

    assert answer.startswith(b"HTTP/1.1 413")
    assert probe.events("http") == []


# -- EventBridge, SQS and the stream --------------------------------------------------------


def test_put_events_reach_the_consumer_through_the_rule(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    _put_jobs(runtime, "first", "second")
    _put_jobs(runtime, "ignored", detail_type="something.else")
    runtime.wait_idle()

    records = _job_records(probe)
    assert sorted(_job(record) for record in records) == ["first", "second"]
    record = records[0]
    envelope = json.loads(record["body"])
    assert envelope.keys() == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert (envelope["source"], envelope["detail-type"]) == ("probe", "job.requested")
    assert (envelope["account"], envelope["region"]) == ("123456789012", "us-east-1")
    assert envelope["time"].endswith("Z")
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:probe-jobs"
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= record["attributes"].keys()
    assert record["messageAttributes"] == {}
    assert record["messageId"] and record["receiptHandle"]
    assert runtime.dlq_messages("probe-jobs") == []


def test_failed_items_are_retried_then_dead_lettered_then_redriven(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    probe.failing_jobs.add("bad")
    _put_jobs(runtime, "good-1", "bad", "good-2")
    with pytest.raises(TimeoutError):  # the failing message is still work to be done
        runtime.wait_idle(timeout=0.2)
    runtime.wait_idle()

    deliveries = [_job(record) for record in _job_records(probe)]
    assert deliveries.count("good-1") == deliveries.count("good-2") == 1
    assert deliveries.count("bad") == 2  # max_receive_count
    receive_counts = [
        r["attributes"]["ApproximateReceiveCount"] for r in _job_records(probe) if _job(r) == "bad"
    ]
    assert receive_counts == ["1", "2"]
    dead = runtime.dlq_messages("probe-jobs")
    assert [json.loads(body)["detail"]["job"] for body in dead] == ["bad"]
    assert len(runtime.dlq_messages("probe-jobs")) == 1  # peeking leaves them there

    probe.failing_jobs.clear()
    assert runtime.redrive_dlq("probe-jobs") == 1
    runtime.wait_idle()

    assert [_job(record) for record in _job_records(probe)].count("bad") == 3
    assert runtime.dlq_messages("probe-jobs") == []


def test_stream_consumer_gets_filtered_records_and_retries_from_the_first_failure(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    dynamodb = _client(runtime, "dynamodb")
    probe.failing_once.add("outbox-2")

    def put(sort_key: str, kind: str, **extra: Any) -> None:
        item = {"PK": {"S": "stream-test"}, "SK": {"S": sort_key}, "kind": {"S": kind}, **extra}
        dynamodb.put_item(TableName=PROBE.table.name, Item=item)

    put("outbox-1", "outbox")
    put("note-1", "note")
    put("outbox-2", "outbox")
    put("outbox-3", "outbox", blob={"B": b"\x00\xff"})
    put("outbox-1", "outbox", changed={"BOOL": True})  # MODIFY: filtered out
    runtime.wait_idle()

    batches = [
        [record["dynamodb"]["Keys"]["SK"]["S"] for record in event["Records"]]
        for event in probe.events("outbox")
        if event["Records"][0]["dynamodb"]["Keys"]["PK"]["S"] == "stream-test"
    ]
    delivered = [key for batch in batches for key in batch]
    assert delivered.count("outbox-1") == 1
    assert delivered.count("outbox-2") == 2
    assert "note-1" not in delivered
    failed_batch = next(batch for batch in batches if "outbox-2" in batch)
    retry = batches[batches.index(failed_batch) + 1]
    assert retry == failed_batch[failed_batch.index("outbox-2") :]
    assert delivered[-1] == "outbox-3"

    record = next(
        record
        for event in probe.events("outbox")
        for record in event["Records"]
        if record["dynamodb"]["Keys"]["SK"]["S"] == "outbox-3"
    )
    assert (record["eventName"], record["eventSource"]) == ("INSERT", "aws:dynamodb")
    assert record["awsRegion"] == "us-east-1"
    assert record["eventVersion"]
    assert record["eventID"]
    assert record["eventSourceARN"].startswith(
        "arn:aws:dynamodb:us-east-1:123456789012:table/billow-local-probe/stream/"
    )
    change = record["dynamodb"]
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert change["NewImage"]["blob"] == {"B": base64.b64encode(b"\x00\xff").decode()}
    assert "OldImage" not in change
    assert isinstance(change["ApproximateCreationDateTime"], int)
    assert {"Keys", "SequenceNumber", "SizeBytes"} <= change.keys()


class _RepeatingStream:
    """A stream that hands its last record out again on every later read, as moto does when
    two racing writes got the same sequence number."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._records = records
        self.reads = 0

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "iterator"}

    def get_records(self, **_: Any) -> dict[str, Any]:
        self.reads += 1
        batch = self._records if self.reads == 1 else self._records[-1:]
        return {"Records": batch, "NextShardIterator": "iterator"}


def test_records_the_stream_hands_out_twice_are_delivered_once() -> None:
    records = [
        {
            "eventID": f"event-{n}",
            "eventName": "INSERT",
            "dynamodb": {"SequenceNumber": "100", "NewImage": {"kind": {"S": "outbox"}}},
        }
        for n in (1, 2)
    ]
    stream = _RepeatingStream(records)
    batches: list[list[str]] = []
    stopping = threading.Event()
    tailer = StreamTailer(
        PROBE.stream_consumers[0],
        "arn:stream",
        stream,
        lambda _, event: batches.append([r["eventID"] for r in event["Records"]]),
        Activity(),
        stopping,
    )
    tailer.thread.start()
    try:
        since = time.monotonic()
        assert tailer.wait_caught_up(since, timeout=10)
        assert tailer.wait_caught_up(time.monotonic(), timeout=10)  # and it stays caught up
    finally:
        stopping.set()
        tailer.wake.set()
        tailer.thread.join()

    assert stream.reads >= 3
    assert batches == [["event-1", "event-2"]]


# -- queues and topics functions send to themselves ------------------------------------------


def test_functions_find_the_queues_and_topics_they_declare(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    assert os.environ["BILLOW_QUEUE_URL_PROBE_JOBS"].endswith("/probe-jobs")
    assert os.environ["BILLOW_TOPIC_ARN_PROBE_ALERTS"] == (
        "arn:aws:sns:us-east-1:123456789012:probe-alerts"
    )
    before = runtime.topic_messages("probe-alerts")

    result = runtime.fire_schedule("probe-notify", datetime(2030, 3, 1, tzinfo=UTC))
    runtime.wait_idle()

    assert [_job(record) for record in _job_records(probe)] == ["notified 2030-03-01T00:00:00Z"]
    [message] = runtime.topic_messages("probe-alerts")[len(before) :]
    assert message["Type"] == "Notification"
    assert message["MessageId"] == result["message_id"]
    assert message["TopicArn"] == os.environ["BILLOW_TOPIC_ARN_PROBE_ALERTS"]
    assert message["Subject"] == "tick 2030-03-01T00:00:00Z"
    assert json.loads(message["Message"]) == {"time": "2030-03-01T00:00:00Z"}
    assert runtime.topic_messages("probe-alerts")[len(before) :] == [message]  # still there


def test_topic_messages_admin_endpoint(runtime: LocalRuntime, probe: ModuleType) -> None:
    runtime.fire_schedule("probe-notify", datetime(2030, 4, 1, tzinfo=UTC))
    runtime.wait_idle()
    url = f"{runtime.api_url}/_local/topics"

    status, body = http_json("GET", f"{url}/probe-alerts/messages")

    assert status == 200
    assert body["topic"] == "probe-alerts"
    assert body["messages"] == runtime.topic_messages("probe-alerts")
    assert body["messages"][-1]["Subject"] == "tick 2030-04-01T00:00:00Z"
    status, body = http_json("GET", f"{url}/nope/messages")
    assert (status, body["code"]) == (404, "topic_not_found")
    assert http_json("POST", f"{url}/probe-alerts/messages", {})[0] == 405
    with pytest.raises(UnknownTopicError):
        runtime.topic_messages("nope")


def test_undeclared_queues_and_topics_are_refused_before_anything_starts() -> None:
    sends = PROBE.model_copy(
        update={"functions": (_function("notify", sends_to=("nowhere",)),), "schedules": ()}
    )
    with pytest.raises(ValueError, match="undeclared queue 'nowhere'"):
        check_declaration(sends)
    publishes = PROBE.model_copy(
        update={"functions": (_function("notify", publishes_to=("nowhere",)),), "schedules": ()}
    )
    with pytest.raises(ValueError, match="undeclared topic 'nowhere'"):
        LocalRuntime(topology=publishes, functions_root=FIXTURES).start()
    check_declaration(PROBE)
    check_declaration(TOPOLOGY)


# -- schedules and the admin endpoints ------------------------------------------------------


def test_schedules_fire_only_when_asked(runtime: LocalRuntime, probe: ModuleType) -> None:
    result = runtime.fire_schedule("probe-tick", datetime(2030, 1, 1, tzinfo=UTC))
    assert result == {"schedule": "probe-tick", "now": "2030-01-01T00:00:00Z"}
    with pytest.raises(UnknownScheduleError):
        runtime.fire_schedule("nope", datetime(2030, 1, 1, tzinfo=UTC))

    url = f"{runtime.api_url}/_local/schedules"
    status, body = http_json(
        "POST", f"{url}/probe-tick/fire", {"time": "2030-02-01T10:00:00+02:00"}
    )
    assert (status, body) == (
        200,
        {
            "schedule": "probe-tick",
            "time": "2030-02-01T08:00:00Z",
            "result": {"schedule": "probe-tick", "now": "2030-02-01T08:00:00Z"},
        },
    )
    assert len(probe.events("tick")) == 2

    status, body = http_json("POST", f"{url}/nope/fire", {"time": "2030-01-01T00:00:00Z"})
    assert (status, body["code"]) == (404, "schedule_not_found")
    status, body = http_json("POST", f"{url}/probe-tick/fire", {"time": "yesterday"})
    assert (status, body["error_details"]) == (422, {"time": ["invalid_value"]})
    # Times whose billing periods Python's dates cannot count are refused, not a 500.
    for moment in ("0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59Z"):
        status, body = http_json("POST", f"{url}/probe-tick/fire", {"time": moment})
        assert (status, body["error_details"]) == (422, {"time": ["value_is_out_of_range"]})
    with pytest.raises(ScheduleTimeOutOfRangeError):
        runtime.fire_schedule("probe-tick", datetime(1969, 12, 31, 23, 59, tzinfo=UTC))
    assert len(probe.events("tick")) == 2
    assert http_json("GET", f"{url}/probe-tick/fire")[0] == 405
    assert http_json("POST", f"{runtime.api_url}/_local/unknown", {})[0] == 404


def test_admin_endpoint_creates_organizations(runtime: LocalRuntime) -> None:
    url = f"{runtime.api_url}/_local/organizations"
    status, body = http_json("POST", url, {"name": "Probe org", "api_key": "probe-key-123"})

    assert status == 200, body
    organization = body["organization"]
    assert organization.keys() == {"id", "name", "api_key", "hmac_key"}
    assert (organization["name"], organization["api_key"]) == ("Probe org", "probe-key-123")
    status, body = http_json("POST", url, {"api_key": "x"})
    assert (status, body["error_details"]) == (422, {"name": ["value_is_mandatory"]})
    status, body = http_json("POST", url, {"name": "Copycat", "api_key": "probe-key-123"})
    assert (status, body) == (
        422,
        {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": {"api_key": ["value_already_exist"]},
        },
    )
    deep = b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    response = _request(runtime, "POST", "/_local/organizations", body=deep)
    assert response.status == 400
    assert json.loads(response.read())["error_details"] == {"body": ["invalid_json_object"]}


# -- lifecycle ------------------------------------------------------------------------------


def _runtime_threads() -> int:
    return sum(thread.name.startswith("billow-local-") for thread in threading.enumerate())


def test_stop_releases_everything_and_the_runtime_can_start_again(
    runtime: LocalRuntime, probe: ModuleType
) -> None:
    tiny = PROBE.model_copy(
        update={
            "table": PROBE.table.model_copy(update={"name": "billow-local-tiny"}),
            "bus_name": "billow-local-tiny",
            "functions": (
                *(f for f in PROBE.functions if f.name != "notify"),
                _function("notify", sends_to=("tiny-jobs",), publishes_to=("tiny-alerts",)),
            ),
            "queues": (Queue(name="tiny-jobs", consumer="jobs"),),
            "rules": (),
            "topics": (Topic(name="tiny-alerts", description="t"),),
        }
    )
    environment = dict(os.environ)
    threads = _runtime_threads()
    second = LocalRuntime(topology=tiny, functions_root=FIXTURES)

    for _ in range(2):  # stop() deletes what start() created, so a restart works
        second.start()
        assert os.environ["AWS_ENDPOINT_URL"] == second.aws_url
        assert os.environ["BILLOW_TABLE_NAME"] == "billow-local-tiny"
        assert os.environ["BILLOW_QUEUE_URL_TINY_JOBS"].endswith("/tiny-jobs")
        assert os.environ["BILLOW_TOPIC_ARN_TINY_ALERTS"].endswith(":tiny-alerts")
        assert "BILLOW_QUEUE_URL_PROBE_JOBS" not in os.environ  # the other runtime's
        assert second.topic_messages("tiny-alerts") == []
        api_url = second.api_url
        assert http_json("GET", f"{api_url}/infer") == (200, {"inferred": True})
        second.stop()

        assert dict(os.environ) == environment
        assert _runtime_threads() == threads
        with pytest.raises(OSError):
            http_json("GET", f"{api_url}/infer")
