"""Local mode: all of Billow on 127.0.0.1, built from the topology the stack deploys.

AWS is moto in server mode. The parts AWS plays itself are played here by threads in this
process that build the real event shapes and call the very same handlers, one module
each; ``LocalRuntime`` starts and stops them together:

* API Gateway (HTTP API, payload v2.0), ``local.api_gateway``: a threaded HTTP server,
  plus local-only admin endpoints under ``/_local/`` (``local.admin_routes``) that the
  deployed stack never has;
* Lambda, ``local.lambda_invocation``: each function's handler loaded once, as in a warm
  container, and invoked with the runtime's context object;
* Lambda's SQS event source mappings, ``local.sqs_polling``: one long-polling thread per
  queue, honouring partial batch failures (failed messages come back after the
  visibility timeout and moto moves them to the DLQ after ``max_receive_count`` receives);
* Lambda's DynamoDB-stream event source mappings, ``local.stream_tailing``: one tailer
  per stream consumer, with Lambda's event filtering and retry-from-the-first-failure;
* the resources, ``local.resources``: the table, bus, queues, rules and topics, created in
  moto from the topology; the people subscribed to a notification topic are an SQS
  "inbox" queue subscribed to it, and what reached the topic is shown by
  ``LocalRuntime.topic_messages`` and ``GET /_local/topics/{name}/messages``.

Functions find the queues they send to and the topics they publish to through the same
``BILLOW_QUEUE_URL_<NAME>`` / ``BILLOW_TOPIC_ARN_<NAME>`` variables the stack sets. All
functions share this process's environment, so each one sees every queue and topic that
any function declares in ``sends_to`` / ``publishes_to`` (in AWS, only its own).

EventBridge Scheduler (``local.scheduling``) is the part that is *not* played
automatically: moto's Scheduler never fires, so a schedule runs only when asked to,
through ``LocalRuntime.fire_schedule``, ``POST /_local/schedules/{name}/fire`` or
``admin.py fire-schedule``, at the time the caller chooses (scheduled work takes "now"
from its event, so any date can be replayed).

Handlers, settings and boto3 clients are process-wide, so run one ``LocalRuntime`` at a
time per process: a second one borrows the environment until it stops.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from billow.composition import dependencies
from billow.services.organizations import NewOrganization, create_organization
from billow.settings import QUEUE_URL_PREFIX, TOPIC_ARN_PREFIX, env_name
from billow.topology import TOPOLOGY, Topology
from local import moto_patches, moto_speedups
from local.admin_routes import AdminRoutes
from local.api_gateway import Gateway, GatewayServer, RouteTable
from local.lambda_invocation import Activity, Functions
from local.resources import (
    REGION,
    QueueResources,
    TopicResources,
    UnknownTopicError,
    create_resources,
)
from local.scheduling import (
    SCHEDULE_TIMES,
    ScheduleTimeOutOfRangeError,
    UnknownScheduleError,
    schedule_time,
)
from local.sqs_polling import QueuePoller, chunks
from local.stream_tailing import StreamTailer
from local.stripe_emulator import StripeEmulator

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRETS_PREFIX = "billow/local"
JOIN_TIMEOUT_S = 10.0
logger = logging.getLogger(__name__)


class PortInUseError(RuntimeError):
    """A fixed port asked for is taken; ``python -m local`` turns this into a clear exit."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(f"{service}: port {port} on 127.0.0.1 is already in use")
        self.service = service
        self.port = port


def _ensure_port_free(service: str, port: int) -> None:
    """Fail before starting a server thread: moto's thread would hang on a taken port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(service, port) from exc


def _forget_process_caches() -> None:
    """Each start and stop is a cold start: drop clients and settings built for another
    environment (boto3's default session, Billow's cached composition root)."""
    boto3.DEFAULT_SESSION = None
    dependencies.cache_clear()


_RUNNING: list[LocalRuntime] = []
"""Started runtimes, oldest first; they share one process environment."""


def check_declaration(topology: Topology) -> None:
    """Refuse a topology whose functions send to queues or topics it does not declare."""
    queues = {queue.name for queue in topology.queues}
    topics = {topic.name for topic in topology.topics}
    for function in topology.functions:
        for name in set(function.sends_to) - queues:
            raise ValueError(f"function {function.name} sends to the undeclared queue {name!r}")
        for name in set(function.publishes_to) - topics:
            raise ValueError(f"function {function.name} publishes to the undeclared topic {name!r}")


class LocalRuntime:
    """Billow on localhost: moto, the Stripe emulator, the gateway and the pollers."""

    def __init__(
        self,
        api_port: int = 0,
        stripe_port: int = 0,
        aws_port: int = 0,
        topology: Topology = TOPOLOGY,
        functions_root: Path = REPO_ROOT / "functions",
        visibility_timeout_s: int | None = None,
        retry_base_s: int = 30,
    ) -> None:
        self._api_port = api_port
        self._stripe_port = stripe_port
        self._aws_port = aws_port
        self._topology = topology
        self._functions_root = functions_root
        self._visibility_timeout_s = visibility_timeout_s
        self._retry_base_s = retry_base_s
        """First backoff step of the consumers that retry on a schedule of their own
        (webhook deliveries, Stripe syncs); the tests make it 0."""
        self._reset()

    def _reset(self) -> None:
        """Everything one run owns; a stopped runtime can be started again."""
        self._stopping = threading.Event()
        self._activity = Activity()
        self._moto: ThreadedMotoServer | None = None
        self._stripe: StripeEmulator | None = None
        self._server: GatewayServer | None = None
        self._threads: list[threading.Thread] = []
        self._tailers: list[StreamTailer] = []
        self._queues: dict[str, QueueResources] = {}
        self._topics: dict[str, TopicResources] = {}
        self._topic_lock = threading.Lock()
        self._topic_messages: dict[str, list[dict[str, Any]]] = {}
        self._stream_arn = ""
        self._cleanups: list[Callable[[], object]] = []
        self._saved_env: dict[str, str | None] = {}
        self._werkzeug_level: int | None = None
        self._functions: Functions | None = None
        self._clients: dict[str, Any] = {}
        self._urls: dict[str, str] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start moto, the Stripe emulator and the gateway, create the topology's resources
        and start the pollers. On failure, whatever had started is stopped again."""
        if self._urls:
            raise RuntimeError("this LocalRuntime is already started")
        for other in list(_RUNNING):
            # It is about to lose the environment its handlers read: let its work finish.
            try:
                other.wait_idle()
            except TimeoutError as exc:
                logger.warning("starting a second LocalRuntime while another is busy: %s", exc)
        check_declaration(self._topology)
        try:
            self._start_moto()
            self._start_stripe()
            self._bind_gateway()
            self._set_environment()
            account_id = self._clients["sts"].get_caller_identity()["Account"]
            self._functions = Functions(self._topology, self._functions_root, account_id)
            self._create_resources()
            self._set_resource_environment()
            self._start_workers(account_id)
        except BaseException:
            self.stop()
            raise
        _RUNNING.append(self)
        logger.info(
            "local Billow: API %s, Stripe %s, AWS %s", self.api_url, self.stripe_url, self.aws_url
        )

    def stop(self) -> None:
        """Stop everything ``start`` began, in reverse; safe after a failed start or twice."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        self._stopping.set()
        for tailer in self._tailers:
            tailer.wake.set()
        if self._server is not None:
            if self._threads:
                self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("%s did not stop within %ss", thread.name, JOIN_TIMEOUT_S)
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as exc:  # state may already be gone (a reset moto)
                logger.debug("cleanup failed: %s", exc)
        if self._stripe is not None:
            self._stripe.stop()
        if self._moto is not None:
            self._moto.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._functions is not None:
            self._functions.unload()
        if self._werkzeug_level is not None:
            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
        _forget_process_caches()
        self._reset()

    def __enter__(self) -> LocalRuntime:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self._url("api")

    @property
    def stripe_url(self) -> str:
        return self._url("stripe")

    @property
    def aws_url(self) -> str:
        return self._url("aws")

    # -- what tests, the CLI and the admin endpoints use ----------------------------------

    def create_organization(self, name: str, api_key: str | None = None) -> NewOrganization:
        """Create a tenant with Billow's own service, in this runtime's table."""
        self._require_started()
        try:
            return create_organization(dependencies(), name=name, api_key=api_key)
        finally:
            self._wake_tailers()

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Invoke a function with ``event`` and return its JSON result, as ``aws lambda
        invoke`` does (an event source's batch, made by hand, for instance)."""
        try:
            return self._invoke(function, event)
        finally:
            self._wake_tailers()

    def fire_schedule(self, name: str, time: datetime) -> Any:
        """Invoke a schedule's target with the event EventBridge Scheduler would send."""
        schedule = next((s for s in self._topology.schedules if s.name == name), None)
        if schedule is None:
            raise UnknownScheduleError(name)
        first, end = SCHEDULE_TIMES
        if not first <= (time if time.tzinfo else time.replace(tzinfo=UTC)) < end:
            raise ScheduleTimeOutOfRangeError(time)
        try:
            return self._invoke(schedule.function, {"schedule": name, "time": schedule_time(time)})
        finally:
            self._wake_tailers()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once no queue holds a message (visible, in flight or delayed), every stream
        consumer has read to the end, and no poller took or finished work meanwhile.

        Messages that keep failing count as work until they reach their DLQ. Two quiet
        rounds in a row are required, with the DLQs unchanged between them: moto moves a
        message to its DLQ during a later receive, and for a moment it is in neither queue.
        """
        self._require_started()
        deadline = time.monotonic() + timeout
        quiet: tuple[int, tuple[int, ...]] | None = None  # activity mark and DLQ sizes
        while True:
            mark = self._activity.count
            checked_at = time.monotonic()
            counts = {name: self._queue_counts(res) for name, res in self._queues.items()}
            if (
                not any(n for c in counts.values() for name, n in c.items() if name != "DLQ")
                and all(
                    tailer.wait_caught_up(checked_at, max(0.0, deadline - time.monotonic()))
                    for tailer in self._tailers
                )
                and self._activity.count == mark
            ):
                round_ = (mark, tuple(c["DLQ"] for c in counts.values()))
                if quiet == round_:
                    return
                quiet = round_
            else:
                quiet = None
            if time.monotonic() >= deadline:
                raise TimeoutError(f"local Billow still busy after {timeout}s: {counts}")
            self._stopping.wait(0.05)

    def dlq_messages(self, queue_name: str) -> list[str]:
        """Peek at the bodies of the messages in a queue's DLQ; they stay there."""
        resources = self._queue(queue_name)
        messages = self._drain(resources.dlq_url)
        for chunk in chunks(messages):
            self._clients["sqs"].change_message_visibility_batch(
                QueueUrl=resources.dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
        return [message["Body"] for message in messages]

    def topic_messages(self, topic_name: str) -> list[dict[str, Any]]:
        """Everything published to a topic since this runtime started, oldest first.

        Each entry is the notification SNS delivers to a subscribed queue (``Type``,
        ``MessageId``, ``TopicArn``, ``Subject``, ``Message``, ``Timestamp`` …). Reading
        moves what the inbox holds into a list kept here, so later readers see it too; SNS
        delivers to the inbox within ``Publish``, so once the publisher's invocation is
        over (``wait_idle``), its messages are in the answer.
        """
        self._require_started()
        if topic_name not in self._topics:
            raise UnknownTopicError(topic_name)
        inbox_url = self._topics[topic_name].inbox_url
        with self._topic_lock:
            messages = self._drain(inbox_url)
            received = self._topic_messages[topic_name]
            received.extend(json.loads(message["Body"]) for message in messages)
            for chunk in chunks(messages):
                self._clients["sqs"].delete_message_batch(
                    QueueUrl=inbox_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                        for index, message in enumerate(chunk)
                    ],
                )
            return [dict(message) for message in received]

    def redrive_dlq(self, queue_name: str) -> int:
        """Move every DLQ message back to its source queue (replay); returns how many.

        moto has no StartMessageMoveTask, so this receives, re-sends and deletes.
        """
        resources = self._queue(queue_name)
        sqs = self._clients["sqs"]
        messages = self._drain(resources.dlq_url)
        for chunk in chunks(messages):
            sent = sqs.send_message_batch(
                QueueUrl=resources.url,
                Entries=[
                    {
                        "Id": str(index),
                        "MessageBody": message["Body"],
                        "MessageAttributes": {
                            name: {key: v for key, v in value.items() if v not in ([], None)}
                            for name, value in message.get("MessageAttributes", {}).items()
                        },
                    }
                    for index, message in enumerate(chunk)
                ],
            )
            if sent.get("Failed"):
                raise RuntimeError(f"redrive to {queue_name} failed: {sent['Failed']}")
            sqs.delete_message_batch(
                QueueUrl=resources.dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )
        return len(messages)

    # -- start-up -------------------------------------------------------------------------

    def _start_moto(self) -> None:
        if self._aws_port:
            _ensure_port_free("AWS (moto)", self._aws_port)
        werkzeug = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)  # one access-log line per SQS poll is noise
        moto_speedups.speed_up_moto()
        moto_patches.install()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._aws_port, verbose=False)
        server.start()
        self._moto = server
        host, port = server.get_host_and_port()
        self._urls["aws"] = f"http://{host}:{port}"

    def _start_stripe(self) -> None:
        if self._stripe_port:
            _ensure_port_free("Stripe emulator", self._stripe_port)
        emulator = StripeEmulator(host="127.0.0.1", port=self._stripe_port)
        self._urls["stripe"] = emulator.start()
        self._stripe = emulator

    def _bind_gateway(self) -> None:
        gateway = Gateway(
            RouteTable(self._topology.routes),
            self._invoke,
            AdminRoutes(self).handle,
            self._wake_tailers,
        )
        try:
            self._server = GatewayServer(gateway, self._api_port)
        except OSError as exc:
            raise PortInUseError("API gateway", self._api_port) from exc
        self._urls["api"] = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _set_environment(self) -> None:
        topology = self._topology
        changes: dict[str, str | None] = {
            "AWS_ENDPOINT_URL": self._urls["aws"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "AWS_PROFILE": None,
            "AWS_DEFAULT_PROFILE": None,
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": None,
            "BILLOW_TABLE_NAME": topology.table.name,
            "BILLOW_EVENT_BUS_NAME": topology.bus_name,
            "BILLOW_SECRETS_PREFIX": SECRETS_PREFIX,
            "BILLOW_PUBLIC_API_URL": self._urls["api"],
            "BILLOW_STRIPE_API_BASE": self._urls["stripe"],
            "BILLOW_WEBHOOK_RETRY_BASE_S": str(self._retry_base_s),
            "BILLOW_SYNC_RETRY_BASE_S": str(self._retry_base_s),
        }
        # Service-specific endpoints would win over AWS_ENDPOINT_URL and reach past moto;
        # queue URLs and topic ARNs of another runtime or shell would reach past this one.
        stale = ("AWS_ENDPOINT_URL_", QUEUE_URL_PREFIX, TOPIC_ARN_PREFIX)
        changes.update({key: None for key in os.environ if key.startswith(stale)})
        self._change_environment(changes)
        session, url = boto3.session.Session(region_name=REGION), self._urls["aws"]
        self._clients = {
            "dynamodb": session.client("dynamodb", endpoint_url=url),
            "dynamodbstreams": session.client("dynamodbstreams", endpoint_url=url),
            "events": session.client("events", endpoint_url=url),
            "sns": session.client("sns", endpoint_url=url),
            "sqs": session.client("sqs", endpoint_url=url),
            "sts": session.client("sts", endpoint_url=url),
        }

    def _set_resource_environment(self) -> None:
        """``BILLOW_QUEUE_URL_*`` and ``BILLOW_TOPIC_ARN_*``, once the resources exist."""
        functions = self._topology.functions
        sent_to = {name for function in functions for name in function.sends_to}
        published_to = {name for function in functions for name in function.publishes_to}
        changes: dict[str, str | None] = {
            env_name(QUEUE_URL_PREFIX, name): self._queues[name].url for name in sorted(sent_to)
        }
        changes.update(
            {env_name(TOPIC_ARN_PREFIX, name): self._topics[name].arn for name in published_to}
        )
        self._change_environment(changes)

    def _change_environment(self, changes: dict[str, str | None]) -> None:
        """Apply ``changes`` (None unsets), remembering the first value of each for ``stop``."""
        for key, value in changes.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _forget_process_caches()

    def _create_resources(self) -> None:
        created = create_resources(
            self._topology, self._clients, self._visibility_timeout_s, self._cleanups
        )
        self._stream_arn = created.stream_arn
        self._queues = created.queues
        self._topics = created.topics
        self._topic_messages = {name: [] for name in created.topics}

    def _start_workers(self, account_id: str) -> None:
        assert self._server is not None
        self._server.gateway.account_id = account_id
        threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="billow-local-gateway",
                daemon=True,
            )
        ]
        for resources in self._queues.values():
            poller = QueuePoller(
                resources,
                self._clients["sqs"],
                self._invoke,
                self._activity,
                self._stopping,
                self._wake_tailers,
            )
            threads.append(poller.thread)
        for consumer in self._topology.stream_consumers:
            tailer = StreamTailer(
                consumer,
                self._stream_arn,
                self._clients["dynamodbstreams"],
                self._invoke,
                self._activity,
                self._stopping,
            )
            self._tailers.append(tailer)
            threads.append(tailer.thread)
        for thread in threads:  # the gateway first: stop() shuts it down once this is non-empty
            thread.start()
            self._threads.append(thread)

    # -- internals ------------------------------------------------------------------------

    def _require_started(self) -> Functions:
        if self._functions is None:
            raise RuntimeError("LocalRuntime is not started")
        return self._functions

    def _url(self, name: str) -> str:
        self._require_started()
        return self._urls[name]

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self._require_started().invoke(function, event)

    def _wake_tailers(self) -> None:
        """An invocation may have written to the table: let the tailers look right away."""
        for tailer in self._tailers:
            tailer.wake.set()

    def _queue(self, name: str) -> QueueResources:
        self._require_started()
        if name not in self._queues:
            raise KeyError(f"no queue {name!r} in this runtime's topology")
        return self._queues[name]

    def _queue_counts(self, resources: QueueResources) -> dict[str, int]:
        """The queue's visible, in-flight and delayed messages, and its DLQ's size."""
        sqs, names = self._clients["sqs"], ("Messages", "MessagesNotVisible", "MessagesDelayed")
        wanted = [f"ApproximateNumberOf{name}" for name in names]
        source = sqs.get_queue_attributes(QueueUrl=resources.url, AttributeNames=wanted)
        dlq = sqs.get_queue_attributes(QueueUrl=resources.dlq_url, AttributeNames=wanted[:2])
        counts = {name: int(source["Attributes"][f"ApproximateNumberOf{name}"]) for name in names}
        counts["DLQ"] = sum(int(n) for n in dlq["Attributes"].values())
        return counts

    def _drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Receive everything a (DLQ) queue holds, hidden for a while from other readers."""
        messages: list[dict[str, Any]] = []
        while (
            batch := self._clients["sqs"]
            .receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        ):
            messages.extend(batch)
        return messages
