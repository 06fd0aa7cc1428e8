"""Usage's items: billable metrics, raw events, charge aggregates and their bookkeeping.

``store.usage``; access patterns: the Store's (``billow.adapters.dynamodb``).

Raw events are spread over ``EVENT_BUCKETS`` partitions by a hash of the transaction id,
so one busy subscription's writes spread over them (DynamoDB takes about 1,000 write
units a second per partition key), and an event is found by its transaction id alone
(Lago's ``GET /events/{transaction_id}``); the length prefix in their key makes
``begins_with`` exact whatever characters an id holds. Billing and current usage read a
period's aggregates with one Query: O(charges), never the events. Stream receipts hold
ids, no tenant data, and outlive the stream's 24 hours.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, Field

from billow.adapters.catalog_records import load, stage_coded
from billow.adapters.listing import ALL, Repository, list_partition
from billow.adapters.table import Item, Transaction, expires_in, org_pk, packed, unpacked
from billow.domain.errors import ConcurrentUpdate
from billow.domain.usage import AggregateState, BillableMetric, UsageEvent

METRICS = "METRICS"
EVENT_BUCKETS = 16
EVENT_RETENTION_S = 400 * 24 * 3600
"""Raw events are kept 400 days: a yearly period and a month of grace to audit or
re-aggregate them, then DynamoDB's TTL removes them at no cost."""
RECEIPT_TTL_S = 2 * 24 * 3600
NO_FILTER = "-"


def events_partition(organization_id: str, transaction_id: str) -> str:
    bucket = zlib.crc32(transaction_id.encode()) % EVENT_BUCKETS
    return f"{org_pk(organization_id)}#EVENTS#{bucket:02d}"


def _event_prefix(transaction_id: str) -> str:
    return f"EVENT#{len(transaction_id)}#{transaction_id}#"


def event_key(organization_id: str, transaction_id: str, external_subscription_id: str) -> Item:
    return {
        "PK": events_partition(organization_id, transaction_id),
        "SK": _event_prefix(transaction_id) + external_subscription_id,
    }


def aggregate_key(
    organization_id: str, subscription_id: str, period: str, charge_id: str, filter_id: str | None
) -> Item:
    return {
        "PK": org_pk(organization_id),
        "SK": f"USAGE#{subscription_id}#{period}#{charge_id}#{filter_id or NO_FILTER}",
    }


def carry_key(
    organization_id: str, subscription_id: str, charge_id: str, filter_id: str | None
) -> Item:
    return {
        "PK": org_pk(organization_id),
        "SK": f"USAGE_CARRY#{subscription_id}#{charge_id}#{filter_id or NO_FILTER}",
    }


def value_key(
    organization_id: str,
    subscription_id: str,
    scope: str,
    charge_id: str,
    filter_id: str | None,
    value: str,
) -> Item:
    digest = hashlib.sha256(value.encode()).hexdigest()
    owner = f"{subscription_id}#{scope}#{charge_id}#{filter_id or NO_FILTER}"
    return {"PK": org_pk(organization_id), "SK": f"USAGE_VALUE#{owner}#{digest}"}


def receipt_key(stream_event_id: str) -> Item:
    return {"PK": f"USAGE_RECEIPT#{stream_event_id}", "SK": "USAGE_RECEIPT"}


class StoredAggregate:
    """An aggregate as read: its state, the version its write must expect, and which
    charge and filter it belongs to."""

    def __init__(self, item: Item | None) -> None:
        self.version: int | None = int(str(item["version"])) if item else None
        self.state = (
            AggregateState.model_validate_json(str(item["state"])) if item else AggregateState()
        )
        self.charge_id = str(item["charge_id"]) if item else ""
        self.filter_id = (
            str(item["filter_id"]) if item and item.get("filter_id") != NO_FILTER else None
        )


class Progress(BaseModel):
    """Progressive billing's record of one subscription period: the threshold levels
    already invoiced, what each charge (and filter) was invoiced so far, and whether the
    period's own invoice closed it (nothing more is invoiced for it then)."""

    level: int = 0
    billed: dict[str, int] = Field(default_factory=dict)
    closed: bool = False
    version: int | None = None
    """The version read (None: no record yet); a write expects it."""


def group_key(charge_id: str, filter_id: str | None) -> str:
    return f"{charge_id}#{filter_id or NO_FILTER}"


class UsageRecords(Repository):
    # -- metrics -------------------------------------------------------------------------

    def get_metric(self, organization_id: str, code: str) -> BillableMetric | None:
        """The live metric with this code (a deleted one has given its code up)."""
        pointer = self._db.get_item(org_pk(organization_id), f"METRIC_CODE#{code}")
        metric = (
            self.get_metric_by_id(organization_id, str(pointer["lago_id"])) if pointer else None
        )
        return metric if metric is not None and metric.deleted_at is None else None

    def get_metric_by_id(self, organization_id: str, lago_id: str) -> BillableMetric | None:
        item = self._db.get_item(org_pk(organization_id), f"METRIC#{lago_id}")
        return load(BillableMetric, item) if item else None

    def get_metrics_by_id(
        self, organization_id: str, lago_ids: Sequence[str]
    ) -> dict[str, BillableMetric]:
        keys = [
            {"PK": org_pk(organization_id), "SK": f"METRIC#{lago_id}"}
            for lago_id in dict.fromkeys(lago_ids)
        ]
        metrics = [load(BillableMetric, item) for item in self._db.get_items(keys)]
        return {metric.lago_id: metric for metric in metrics}

    def metric_page(
        self, organization_id: str, skip: int, take: int
    ) -> tuple[list[BillableMetric], int]:
        keys = self._db.page_keys(
            "GSI3", [list_partition(organization_id, METRICS, "")], skip, take
        )
        page = [load(BillableMetric, item) for item in self._db.get_items(keys)]
        return page, self._db.count(organization_id, METRICS, [ALL])

    def stage_metric(
        self, transaction: Transaction, metric: BillableMetric, before: BillableMetric | None
    ) -> None:
        """A metric write, its list entry and count, and its code pointer (moved by a new
        code, removed by a delete)."""
        stage_coded(transaction, metric, before, kind="metric", family=METRICS, prefix="METRIC")

    @staticmethod
    def _uses_key(organization_id: str, metric_id: str) -> Item:
        return {"PK": org_pk(organization_id), "SK": f"COUNTER#METRIC_USES#{metric_id}"}

    def plans_using(self, metric: BillableMetric) -> int:
        key = self._uses_key(metric.organization_id, metric.lago_id)
        item = self._db.get_item(str(key["PK"]), str(key["SK"]))
        return int(str(item.get("plans", 0))) if item else 0

    def stage_plan_uses(
        self, transaction: Transaction, organization_id: str, moves: dict[str, int]
    ) -> None:
        """Move metrics' counts of the plans that charge for them (+1 or -1 by metric id)."""
        for metric_id, delta in sorted(moves.items()):
            transaction.add_counts(self._uses_key(organization_id, metric_id), {"plans": delta})

    def stage_unused(self, transaction: Transaction, metric: BillableMetric) -> None:
        """Fail the transaction should a plan charge for the metric meanwhile."""
        transaction.condition_check(
            self._uses_key(metric.organization_id, metric.lago_id),
            "attribute_not_exists(PK) OR plans = :none",
            {":none": 0},
        )

    # -- raw events ----------------------------------------------------------------------

    def get_events(self, organization_id: str, keys: Sequence[tuple[str, str]]) -> list[UsageEvent]:
        """The stored events among (transaction id, external subscription id) pairs.
        Eventually consistent (half the read units): a race between two requests sending
        the same event is settled by the stream, which reports only the first write as new."""
        wanted = [event_key(organization_id, tx, sub) for tx, sub in dict.fromkeys(keys)]
        return [
            UsageEvent.model_validate(unpacked(item["data"])) for item in self._db.get_items(wanted)
        ]

    def put_events(self, events: Sequence[UsageEvent]) -> None:
        """Store events (BatchWriteItem, 25 at a time). Only an event's first write is an
        INSERT on the stream, so an event written twice is still aggregated once."""
        with self._db.table.batch_writer() as batch:
            for event in events:
                batch.put_item(Item=self._event_item(event))

    def put_event_once(self, event: UsageEvent) -> bool:
        """Store one event unless its key holds one already; False when it did."""
        transaction = Transaction()
        transaction.put(self._event_item(event), condition="attribute_not_exists(PK)")
        try:
            self._db.commit(transaction)
        except ConcurrentUpdate:
            return False
        return True

    @staticmethod
    def _event_item(event: UsageEvent) -> Item:
        return {
            **event_key(
                event.organization_id, event.transaction_id, event.external_subscription_id
            ),
            "kind": "usage_event",
            "data": packed(event),
            "expires_at": expires_in(EVENT_RETENTION_S),
        }

    def find_event(self, organization_id: str, transaction_id: str) -> UsageEvent | None:
        """The event with this transaction id (the first by external subscription id when
        several subscriptions used it, as Lago answers)."""
        prefix = _event_prefix(transaction_id)
        for item in self._db.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": events_partition(organization_id, transaction_id),
                ":prefix": prefix,
            },
            ConsistentRead=True,
            Limit=1,
        ):
            return UsageEvent.model_validate(unpacked(item["data"]))
        return None

    # -- progressive billing ---------------------------------------------------------------

    def get_progress(self, organization_id: str, subscription_id: str, period: str) -> Progress:
        item = self._db.get_item(
            org_pk(organization_id), f"USAGE_PROGRESS#{subscription_id}#{period}"
        )
        if item is None:
            return Progress()
        return Progress.model_validate_json(str(item["progress"])).model_copy(
            update={"version": int(str(item["version"]))}
        )

    @staticmethod
    def stage_progress(
        transaction: Transaction,
        organization_id: str,
        subscription_id: str,
        period: str,
        progress: Progress,
    ) -> None:
        """Written only over the version that was read: the period's invoice and a
        threshold's invoice never both act on the same reading."""
        version = progress.version
        transaction.put_versioned(
            {
                "PK": org_pk(organization_id),
                "SK": f"USAGE_PROGRESS#{subscription_id}#{period}",
                "kind": "usage_progress",
                "progress": progress.model_dump_json(exclude={"version"}),
                "version": 0 if version is None else version + 1,
            },
            version,
        )

    # -- aggregates ----------------------------------------------------------------------

    def period_aggregates(
        self, organization_id: str, subscription_id: str, period: str
    ) -> list[StoredAggregate]:
        """Every charge's (and filter's) aggregate of one period: one Query."""
        return [
            StoredAggregate(item)
            for item in self._db.query_prefix(
                org_pk(organization_id), f"USAGE#{subscription_id}#{period}#"
            )
        ]

    def carried(
        self, organization_id: str, subscription_id: str
    ) -> dict[tuple[str, str | None], tuple[Decimal, str]]:
        """What each recurring charge (and filter) carries: (value, the moment it holds at)."""
        found: dict[tuple[str, str | None], tuple[Decimal, str]] = {}
        for item in self._db.query_prefix(
            org_pk(organization_id), f"USAGE_CARRY#{subscription_id}#"
        ):
            filter_id = str(item["filter_id"])
            found[(str(item["charge_id"]), None if filter_id == NO_FILTER else filter_id)] = (
                Decimal(str(item["value"])),
                str(item["at"]),
            )
        return found

    @staticmethod
    def stage_carry(
        transaction: Transaction,
        organization_id: str,
        subscription_id: str,
        charge_id: str,
        filter_id: str | None,
        value: Decimal,
        at: str,
        previous_at: str | None,
    ) -> None:
        """Move a recurring charge's carried value to the moment ``at``, once: the write
        expects the moment it was read at, so a second billing of the period fails."""
        key = carry_key(organization_id, subscription_id, charge_id, filter_id)
        item = {
            **key,
            "kind": "usage_carry",
            "charge_id": charge_id,
            "filter_id": filter_id or NO_FILTER,
            "value": str(value),
            "at": at,
        }
        if previous_at is None:
            transaction.put(item, condition="attribute_not_exists(PK)")
        else:
            transaction.put(
                item,
                condition="#at = :previous",
                values={":previous": previous_at},
                names={"#at": "at"},
            )

    def read_for_fold(self, keys: Sequence[Item]) -> dict[tuple[str, str], Item]:
        """Aggregates and value marks a stream chunk is about to change (consistent)."""
        return {
            (str(item["PK"]), str(item["SK"])): item
            for item in self._db.get_items(keys, consistent=True)
        }

    @staticmethod
    def stage_aggregate(
        transaction: Transaction,
        key: Item,
        state: AggregateState,
        expected_version: int | None,
        charge_id: str,
        filter_id: str | None,
        period: tuple[str, str],
    ) -> None:
        transaction.put_versioned(
            {
                **key,
                "kind": "usage_aggregate",
                "state": state.model_dump_json(),
                "version": (expected_version + 1) if expected_version is not None else 0,
                "charge_id": charge_id,
                "filter_id": filter_id or NO_FILTER,
                "period_start": period[0],
                "period_end": period[1],
            },
            expected_version,
        )

    @staticmethod
    def stage_value_mark(
        transaction: Transaction, key: Item, present: bool, mark: str, previous: Item | None
    ) -> None:
        """Whether a unique count's value is present, as of event ``mark`` (timestamp and
        transaction id): only a later event changes it."""
        item = {**key, "kind": "usage_value", "present": present, "mark": mark}
        if previous is None:
            transaction.put(item, condition="attribute_not_exists(PK)")
        else:
            transaction.put(
                item, condition="mark = :previous", values={":previous": previous["mark"]}
            )

    @staticmethod
    def stage_receipt(transaction: Transaction, stream_event_id: str, covered: int) -> None:
        transaction.put(
            {
                **receipt_key(stream_event_id),
                "kind": "usage_receipt",
                "covered": covered,
                "expires_at": expires_in(RECEIPT_TTL_S),
            },
            condition="attribute_not_exists(PK)",
        )

    def receipt(self, stream_event_id: str) -> int | None:
        """How many records the chunk starting at this stream record covered, if folded."""
        key = receipt_key(stream_event_id)
        item = self._db.get_item(str(key["PK"]), str(key["SK"]))
        return int(str(item["covered"])) if item else None
