"""Lambda's DynamoDB-stream event source mappings: one tailer per stream consumer, with
event filtering and retry from the first failed record."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, cast

from moto.events.models import EventPattern

from billow.topology import StreamConsumer
from local.lambda_invocation import (
    Activity,
    Invoke,
    batch_item_failures,
    log_handler_failure,
    wire_json,
)

logger = logging.getLogger(__name__)

STREAM_IDLE_WAIT_S = 0.5
"""How long a caught-up stream tailer sleeps unless an invocation wakes it earlier."""
SEEN_EVENT_IDS = 10_000
"""Stream records remembered per tailer to drop moto's re-reads (far more than one read)."""


class StreamTailer:
    """Plays Lambda's DynamoDB-stream event source mapping for one consumer.

    Reads the table's stream through moto's DynamoDB Streams API, drops records the
    consumer's filter pattern rejects (Lambda event filtering shares EventBridge's pattern
    syntax, so moto's matcher is reused), and on ``batchItemFailures`` retries from the
    first failed record, at most ``max_retry_attempts`` times before skipping the batch.
    """

    def __init__(
        self,
        consumer: StreamConsumer,
        stream_arn: str,
        streams: Any,
        invoke: Invoke,
        activity: Activity,
        stopping: threading.Event,
    ) -> None:
        self._consumer = consumer
        self._stream_arn = stream_arn
        self._streams = streams
        self._invoke = invoke
        self._activity = activity
        self._stopping = stopping
        self._pattern = EventPattern.load(json.dumps(consumer.filter_pattern))
        self._iterator: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._caught_up = threading.Condition()
        self._caught_up_at = float("-inf")
        self.wake = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"billow-local-stream-{consumer.function}", daemon=True
        )

    @property
    def function(self) -> str:
        return self._consumer.function

    def wait_caught_up(self, since: float, timeout: float) -> bool:
        """Wait for a read that started at or after ``since`` and found nothing new."""
        self.wake.set()
        with self._caught_up:
            return self._caught_up.wait_for(lambda: self._caught_up_at >= since, timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._read_once()
            except Exception:
                if self._stopping.is_set():
                    return
                logger.exception("tailing the stream for %s failed; retrying", self.function)
                self._iterator = None
                self._stopping.wait(1.0)

    def _read_once(self) -> None:
        if self._iterator is None:
            self._iterator = self._first_iterator()
        self.wake.clear()
        started = time.monotonic()
        response = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
        self._iterator = response["NextShardIterator"]
        fresh = [record for record in response["Records"] if self._first_sighting(record)]
        if not fresh:
            with self._caught_up:
                self._caught_up_at = started
                self._caught_up.notify_all()
            self.wake.wait(STREAM_IDLE_WAIT_S)
            return
        self._activity.touch()
        records = [self._lambda_record(record) for record in fresh]
        # A Lambda record, not an EventBridge event: the pattern syntax is what they share.
        self._deliver([r for r in records if self._pattern.matches_event(cast(Any, r))])
        self._activity.touch()

    def _first_sighting(self, record: dict[str, Any]) -> bool:
        """False for a record read before.

        Two writes racing in moto can get the same sequence number, and moto starts the
        next read after the highest number it returned, so such a record is handed out
        again (at the tail: on every read, until the next write). Event IDs stay unique.
        """
        event_id: str = record["eventID"]
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)
        return True

    def _first_iterator(self) -> str:
        stream = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        (shard,) = stream["Shards"]  # moto keeps one shard per stream
        iterator: str = self._streams.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        return iterator

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = wire_json(record)
        converted["eventSourceARN"] = self._stream_arn
        return converted

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        consumer = self._consumer
        attempts = 0
        while records and not self._stopping.is_set():
            batch = records[: consumer.batch_size]
            failed_at = self._invoke_batch(batch)
            if failed_at is None:
                records, attempts = records[len(batch) :], 0
                continue
            attempts += 1
            if 0 <= consumer.max_retry_attempts < attempts:
                logger.error(
                    "%s: giving up on %d stream records after %d retries",
                    consumer.function,
                    len(batch) - failed_at,
                    consumer.max_retry_attempts,
                )
                records, attempts = records[len(batch) :], 0
                continue
            records = records[failed_at:]
            self._stopping.wait(min(0.05 * 2**attempts, 1.0))

    def _invoke_batch(self, batch: list[dict[str, Any]]) -> int | None:
        """Invoke the consumer; the index of the first record to retry from, if any."""
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        try:
            result = self._invoke(self._consumer.function, {"Records": batch})
        except Exception:
            log_handler_failure(self._consumer.function, f"{len(batch)} stream records")
            return 0
        failed = batch_item_failures(result, sequence_numbers)
        if not failed:
            return None
        return min(index for index, number in enumerate(sequence_numbers) if number in failed)
