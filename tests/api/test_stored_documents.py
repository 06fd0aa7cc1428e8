"""Documents are stored compressed, and those stored before compression still read."""

from __future__ import annotations

import json
import zlib
from typing import Any

import boto3


def _table(local_billow: Any) -> Any:
    resource = boto3.resource(
        "dynamodb", endpoint_url=local_billow.aws_url, region_name="us-east-1"
    )
    return resource.Table("billow")


def test_a_customer_is_stored_compressed_and_reads_back_whole(local_billow: Any, org: Any) -> None:
    profile = {
        "external_id": "packed-1",
        "name": "A customer with a long profile",
        "email": "billing@example.com",
        "address_line1": "1 Long Street",
        "city": "Paris",
        "country": "FR",
        "metadata": [
            {"key": f"key-{n}", "value": f"value-{n}", "display_in_invoice": False}
            for n in range(5)
        ],
    }
    status, created = org.api.post("/customers", {"customer": profile})
    assert status == 200
    key = {"PK": f"ORG#{org.id}", "SK": "CUSTOMER#packed-1"}
    stored = _table(local_billow).get_item(Key=key, ConsistentRead=True)["Item"]["data"]
    text = zlib.decompress(stored.value)
    assert json.loads(text)["external_id"] == "packed-1"
    assert len(stored.value) < len(text) / 2

    status, read = org.api.get("/customers/packed-1")
    assert status == 200 and read == created


def test_a_document_stored_as_plain_json_still_reads(local_billow: Any, org: Any) -> None:
    """Items written before documents were compressed hold their JSON as text."""
    status, created = org.api.post("/customers", {"customer": {"external_id": "plain-1"}})
    assert status == 200
    table = _table(local_billow)
    key = {"PK": f"ORG#{org.id}", "SK": "CUSTOMER#plain-1"}
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    item["data"] = zlib.decompress(item["data"].value).decode()
    table.put_item(Item=item)

    status, read = org.api.get("/customers/plain-1")
    assert status == 200 and read == created
