"""Local mode's moto speed-ups: the same answers as moto's own, at a cost that follows the
page rather than the table (``local/moto_speedups.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from moto.dynamodb.models.table import Table

from local.runtime import LocalRuntime

PARTITION = 300
"""Entries of the listed index partition (the table holds as many again elsewhere)."""


@pytest.fixture
def table(local_billow: LocalRuntime) -> Iterator[Any]:
    """A table of its own in the local runtime's moto (which runs in this process, sped
    up as local mode runs it; ``mock_aws`` would reset the runtime's state)."""
    name = f"speedups-{uuid.uuid4().hex[:8]}"
    options = {
        "endpoint_url": local_billow.aws_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    client = boto3.client("dynamodb", **options)
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": attribute, "AttributeType": "S"}
            for attribute in ("PK", "SK", "GSI3PK", "GSI3SK")
        ],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "GSI3",
                "KeySchema": [
                    {"AttributeName": "GSI3PK", "KeyType": "HASH"},
                    {"AttributeName": "GSI3SK", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    table = boto3.resource("dynamodb", **options).Table(name)
    with table.batch_writer() as batch:
        for partition in ("listed", "other"):
            for n in range(PARTITION):
                batch.put_item(
                    Item={
                        "PK": f"ORG#{partition}",
                        "SK": f"INVOICE#{n:05d}",
                        "GSI3PK": f"{partition}#INVOICES",
                        # Pairs of equal sort keys: the table's key orders within a pair.
                        "GSI3SK": f"2026-{n // 2:05d}",
                        "data": "x" * 200,
                    }
                )
    try:
        yield table
    finally:
        client.delete_table(TableName=name)


def _pages(table: Any, forward: bool, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    request: dict[str, Any] = {
        "IndexName": "GSI3",
        "KeyConditionExpression": "GSI3PK = :pk",
        "ExpressionAttributeValues": {":pk": "listed#INVOICES"},
        "ScanIndexForward": forward,
        "Limit": limit,
    }
    while True:
        answer = table.query(**request)
        pages.append([item["SK"] for item in answer["Items"]])
        if "LastEvaluatedKey" not in answer:
            return pages
        request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


@pytest.mark.parametrize("forward", [True, False])
def test_a_limited_index_query_pages_through_the_partition_in_order(
    table: Any, forward: bool
) -> None:
    pages = _pages(table, forward, limit=40)
    ordered = [f"INVOICE#{n:05d}" for n in range(PARTITION)]
    assert [key for page in pages for key in page] == (ordered if forward else ordered[::-1])
    assert [len(page) for page in pages[:-1]] == [40] * (len(pages) - 1)


def test_a_limited_index_query_hands_moto_its_page_not_the_partition(table: Any) -> None:
    """What moto's Query loop walks: the page and one entry either side, whatever the
    partition holds (before: every entry of the partition, or of the table)."""
    walked: list[int] = []
    all_items = Table.all_items

    def counted(self: Any) -> Any:
        found = all_items(self)
        walked.append(len(found))
        return found

    with mock.patch.object(Table, "all_items", counted):
        first = _pages(table, forward=False, limit=20)[:2]
    assert first[0][0] == f"INVOICE#{PARTITION - 1:05d}"
    assert walked and max(walked) <= 20 + 2
