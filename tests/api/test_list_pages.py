"""Lists read only the page they show, newest first, with exact counts from counters."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from billow.adapters.listing import COUNTER_SHARDS
from billow.composition import dependencies
from local.runtime import LocalRuntime
from tests.api.billing_helpers import create_plan
from tests.api.test_payments import create_add_on, one_off
from tests.conftest import ApiClient, Org, http_json


def customer(org: Any, external_id: str) -> dict[str, Any]:
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": external_id, "currency": "EUR"}}
    )
    assert status == 200, body
    return body["customer"]  # type: ignore[no-any-return]


def listed(org: Any, path: str) -> tuple[list[str], dict[str, Any]]:
    status, body = org.api.get(path)
    assert status == 200, (path, body)
    name = path.split("?", maxsplit=1)[0].rsplit("/", 1)[-1]
    ids = [entry.get("number") or entry["external_id"] for entry in body[name]]
    return ids, body["meta"]


def meta(page: int, total: int, per_page: int) -> dict[str, Any]:
    pages = math.ceil(total / per_page)
    return {
        "current_page": page,
        "next_page": page + 1 if page < pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": pages,
        "total_count": total,
    }


def test_pages_are_newest_first_with_exact_meta_at_their_boundaries(org: Org) -> None:
    for n in range(5):
        customer(org, f"c{n}")
    create_add_on(org, "fee", 500)
    numbers = [one_off(org, f"c{n % 2}")["number"] for n in range(5)]
    newest_customers = [f"c{n}" for n in reversed(range(5))]
    for page in (1, 2, 3, 4):
        found, shown = listed(org, f"/customers?page={page}&per_page=2")
        assert found == newest_customers[(page - 1) * 2 : page * 2]
        assert shown == meta(page, 5, 2)
        found, shown = listed(org, f"/invoices?page={page}&per_page=2")
        assert found == list(reversed(numbers))[(page - 1) * 2 : page * 2]
        assert shown == meta(page, 5, 2)
    found, shown = listed(org, "/customers/c0/invoices?per_page=2&page=2")
    assert (found, shown) == ([numbers[0]], meta(2, 3, 2))


def test_counts_follow_creates_deletes_and_status_changes(org: Org) -> None:
    create_add_on(org, "fee", 500)
    for name in ("alice", "bob", "carol"):
        customer(org, name)
    first, second, third = (one_off(org, "alice") for _ in range(3))
    free = one_off(org, "bob", [{"add_on_code": "fee", "unit_amount_cents": 0}])
    assert org.api.post(f"/invoices/{second['lago_id']}/void")[0] == 200
    assert org.api.delete("/customers/carol")[0] == 200

    def count(path: str) -> int:
        return int(listed(org, path)[1]["total_count"])

    assert count("/customers") == 2
    assert count("/invoices") == 4
    assert count("/invoices?status=voided") == 1
    assert count("/invoices?status=finalized") == 3
    assert count("/invoices?payment_status=succeeded") == 1
    assert count("/invoices?statuses[]=finalized&payment_statuses[]=pending") == 2
    assert count("/invoices?external_customer_id=alice") == 3
    assert count("/invoices?external_customer_id=alice&status=finalized") == 2
    assert count("/customers/alice/invoices?status=voided") == 1
    assert count("/customers/bob/invoices?payment_status=pending") == 0
    assert count("/invoices?external_customer_id=carol") == 0
    found, _ = listed(org, "/invoices?external_customer_id=alice&status=finalized")
    assert found == [third["number"], first["number"]]
    assert listed(org, "/invoices?payment_status=succeeded")[0] == [free["number"]]


def test_issuing_dates_are_a_key_range_with_an_exact_count(org: Org) -> None:
    create_add_on(org, "fee", 500)
    customer(org, "alice")
    issued = one_off(org, "alice")
    day = issued["issuing_date"]
    found, shown = listed(org, f"/invoices?issuing_date_from={day}&issuing_date_to={day}")
    assert (found, shown["total_count"]) == ([issued["number"]], 1)
    _, shown = listed(org, "/invoices?issuing_date_to=2000-01-01")
    assert shown["total_count"] == 0


def test_concurrent_creates_are_each_counted_and_a_refused_write_counts_nothing(
    org: Org,
) -> None:
    create_add_on(org, "fee", 500)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: customer(org, f"c{n}"), range(16)))
        list(pool.map(lambda n: one_off(org, f"c{n}"), range(16)))
    assert listed(org, "/customers")[1]["total_count"] == 16
    assert listed(org, "/invoices")[1]["total_count"] == 16
    # A creation that finds its customer taken, and a second delete, commit nothing.
    assert org.api.post("/customers", json={"customer": {"external_id": "c1"}})[0] == 200
    assert org.api.delete("/customers/c2")[0] == 200
    assert org.api.delete("/customers/c2")[0] == 404
    assert listed(org, "/customers")[1]["total_count"] == 15
    key = uuid.uuid4().hex
    first = one_off(org, "c3", idempotency_key=key)
    again = one_off(org, "c3", idempotency_key=key)
    assert again["lago_id"] == first["lago_id"]
    assert listed(org, "/invoices")[1]["total_count"] == 17
    assert listed(org, "/customers/c3/invoices")[1]["total_count"] == 2


def test_lists_and_counts_stay_in_their_organization(org: Org, local_billow: Any) -> None:
    create_add_on(org, "fee", 500)
    customer(org, "alice")
    one_off(org, "alice")
    status, body = http_json(
        "POST", f"{local_billow.api_url}/_local/organizations", {"name": "Other"}
    )
    assert status == 200, body
    other = ApiClient(local_billow.api_url, body["organization"]["api_key"])
    for path in ("/customers", "/invoices", "/invoices?external_customer_id=alice"):
        status, body = other.get(path)
        assert status == 200
        assert body["meta"]["total_count"] == 0
        assert body[path.split("?")[0].strip("/")] == []


@contextmanager
def items_read() -> Iterator[list[tuple[str, int]]]:
    """Each DynamoDB read the API makes: (what it read, how many items or index entries)."""
    calls: list[tuple[str, int]] = []
    events = dependencies().store.table.meta.client.meta.events

    def noted(http_response: Any, model: Any, **_: Any) -> None:
        answer = json.loads(http_response.content or b"{}")
        if model.name == "BatchGetItem":
            calls.append(("items", sum(len(found) for found in answer["Responses"].values())))
        elif model.name == "Query":
            calls.append(("query", len(answer.get("Items", []))))
        elif model.name == "GetItem":
            calls.append(("items", 1 if answer.get("Item") else 0))

    events.register("after-call.dynamodb", noted, unique_id="test-items-read")
    try:
        yield calls
    finally:
        events.unregister("after-call.dynamodb", unique_id="test-items-read")


def test_a_page_reads_its_own_items_whatever_the_list_size(
    org: Org, local_billow: LocalRuntime
) -> None:
    """Page 1 reads the same at 4 and at 40 customers; page 3 reads the keys before it and
    its own items only (each customer here is one full item; index entries are keys). The
    reads are counted on the process's client, so the functions behind the queues (which
    share it here) must be idle first."""
    create_add_on(org, "fee", 500)

    def reads(path: str) -> tuple[int, list[int]]:
        """Full items read, and the entries each Query returned (list keys or counters)."""
        with items_read() as calls:
            assert org.api.get(path)[0] == 200
        items = sum(count for what, count in calls if what == "items")
        return items, [count for what, count in calls if what == "query"]

    for n in range(4):
        customer(org, f"c{n}")
        one_off(org, f"c{n}")
    local_billow.wait_idle()
    small = {path: reads(path) for path in ("/customers?per_page=3", "/invoices?per_page=3")}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: (customer(org, f"c{n}"), one_off(org, f"c{n}")), range(4, 40)))
    local_billow.wait_idle()
    for path, (items, _) in small.items():
        assert reads(path)[0] == items
        assert 3 in reads(path)[1]  # the page's keys
        assert max(reads(path)[1]) <= COUNTER_SHARDS  # and the count's shards
    items, queries = reads("/customers?per_page=3&page=3")
    assert items <= small["/customers?per_page=3"][0]
    assert 9 in queries  # the keys of pages 1 to 3
    assert max(queries) <= COUNTER_SHARDS


def subscribe(org: Any, external_id: str, customer_id: str, plan: str, **fields: Any) -> None:
    body = {"external_customer_id": customer_id, "plan_code": plan, "external_id": external_id}
    status, answer = org.api.post("/subscriptions", json={"subscription": {**body, **fields}})
    assert status == 200, answer


def test_subscriptions_are_listed_by_status_customer_and_plan_from_keys_and_counters(
    org: Org,
) -> None:
    """Lago lists active subscriptions unless asked, newest first; each filter and their
    combinations are partitions with counts of their own, moved by status changes."""
    create_plan(org, "basic")
    create_plan(org, "pro")
    for name in ("ann", "ben"):
        customer(org, name)
    for external_id, owner, plan in (
        ("s1", "ann", "basic"),
        ("s2", "ann", "pro"),
        ("s3", "ben", "basic"),
        ("s4", "ben", "pro"),
        ("s5", "ben", "basic"),
    ):
        subscribe(org, external_id, owner, plan)
    subscribe(org, "later", "ann", "basic", subscription_at="2099-01-01T00:00:00Z")
    assert org.api.delete("/subscriptions/s3")[0] == 200

    def found(path: str) -> tuple[set[str], dict[str, Any]]:
        """The ids listed (creation times share a second here: the order within one is by
        id, so the pages are checked as sets, and for their order by creation time)."""
        status, body = org.api.get(path)
        assert status == 200, body
        created = [entry["created_at"] for entry in body["subscriptions"]]
        assert created == sorted(created, reverse=True)
        return {entry["external_id"] for entry in body["subscriptions"]}, body["meta"]

    first, first_meta = found("/subscriptions?per_page=2")
    second, second_meta = found("/subscriptions?per_page=2&page=2")
    assert (first_meta, second_meta) == (meta(1, 4, 2), meta(2, 4, 2))
    assert first | second == {"s1", "s2", "s4", "s5"} and not first & second
    assert found("/subscriptions?external_customer_id=ben") == ({"s4", "s5"}, meta(1, 2, 20))
    assert found("/customers/ann/subscriptions") == ({"s1", "s2"}, meta(1, 2, 20))
    assert found("/subscriptions?plan_code=basic") == ({"s1", "s5"}, meta(1, 2, 20))
    assert found("/subscriptions?external_customer_id=ben&plan_code=basic") == (
        {"s5"},
        meta(1, 1, 20),
    )
    assert found("/subscriptions?status[]=terminated") == ({"s3"}, meta(1, 1, 20))
    assert found("/subscriptions?status[]=pending&status[]=active&plan_code=basic") == (
        {"later", "s5", "s1"},
        meta(1, 3, 20),
    )
    assert found("/subscriptions?external_customer_id=nobody") == (set(), meta(1, 0, 20))

    # An upgrade ends one subscription and starts another of the same customer in one
    # transaction: both move the customer's counts, merged into one write.
    subscribe(org, "s1", "ann", "pro")
    assert found("/subscriptions?plan_code=pro") == ({"s1", "s2", "s4"}, meta(1, 3, 20))
    assert found("/subscriptions?status[]=terminated")[1] == meta(1, 2, 20)
    assert found("/customers/ann/subscriptions") == ({"s1", "s2"}, meta(1, 2, 20))


def test_a_subscription_page_reads_its_own_items_whatever_the_list_size(org: Org) -> None:
    create_plan(org, "basic")

    def reads(path: str) -> tuple[int, int]:
        """Full items read, and the most entries one Query returned (keys or counters)."""
        with items_read() as calls:
            assert org.api.get(path)[0] == 200
        items = sum(count for what, count in calls if what == "items")
        return items, max([count for what, count in calls if what == "query"], default=0)

    for n in range(3):
        customer(org, f"c{n}")
        subscribe(org, f"s{n}", f"c{n}", "basic")
    small = reads("/subscriptions?per_page=2")
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: (customer(org, f"c{n}"), subscribe(org, f"s{n}", f"c{n}", "basic")),
                range(3, 30),
            )
        )
    items, most_entries = reads("/subscriptions?per_page=2")
    assert items == small[0]
    assert most_entries <= COUNTER_SHARDS < 30
    assert listed(org, "/subscriptions?per_page=2")[1] == meta(1, 30, 2)


CATALOG = {
    "plans": lambda org, code: create_plan(org, code, 1000),
    "add_ons": lambda org, code: create_add_on(org, code, 500),
    "coupons": lambda org, code: _coupon(org, code),  # noqa: PLW0108 (defined below)
    "taxes": lambda org, code: _tax(org, code),  # noqa: PLW0108
}


def _coupon(org: Any, code: str) -> dict[str, Any]:
    status, body = org.api.post(
        "/coupons",
        json={
            "coupon": {
                "name": code,
                "code": code,
                "coupon_type": "fixed_amount",
                "amount_cents": 100,
                "amount_currency": "EUR",
                "frequency": "once",
                "expiration": "no_expiration",
            }
        },
    )
    assert status == 200, body
    return body["coupon"]  # type: ignore[no-any-return]


def _tax(org: Any, code: str) -> dict[str, Any]:
    status, body = org.api.post("/taxes", json={"tax": {"name": code, "code": code, "rate": "5"}})
    assert status == 200, body
    return body["tax"]  # type: ignore[no-any-return]


def _codes(api: ApiClient, path: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(created_at, code) of each entry, and the meta."""
    status, body = api.get(path)
    assert status == 200, (path, body)
    entries = body[path.split("?", maxsplit=1)[0].strip("/")]
    return [(entry["created_at"], entry["code"]) for entry in entries], body["meta"]


def test_catalog_lists_read_their_page_newest_first_and_count_deletions(
    org: Org, local_billow: LocalRuntime
) -> None:
    for family, create in CATALOG.items():
        for n in range(5):
            create(org, f"{family}-{n}")
        pages = []
        for page in (1, 2, 3, 4):
            found, shown = _codes(org.api, f"/{family}?page={page}&per_page=2")
            pages += found
            assert shown == meta(page, 5, 2)
        # Every object once, newest first (objects made in the same second: by id).
        assert sorted(code for _, code in pages) == [f"{family}-{n}" for n in range(5)]
        assert [made for made, _ in pages] == sorted((made for made, _ in pages), reverse=True)
        status, body = org.api.delete(f"/{family}/{family}-3")
        assert status == 200, body
        found, shown = _codes(org.api, f"/{family}?per_page=10")
        assert [code for _, code in found] == [code for _, code in pages if code != f"{family}-3"]
        assert shown["total_count"] == 4
        # At 4 + 25 objects, page 1 reads its two keys, its two items and the count's
        # shards: no Query returns more than the shards, however long the list.
        for n in range(5, 30):
            create(org, f"{family}-{n}")
        with items_read() as calls:
            found, shown = _codes(org.api, f"/{family}?per_page=2")
        assert len(found) == 2 and shown["total_count"] == 29
        assert max(count for what, count in calls if what == "query") <= COUNTER_SHARDS
    status, body = http_json(
        "POST", f"{local_billow.api_url}/_local/organizations", {"name": "Other"}
    )
    assert status == 200, body
    other = ApiClient(local_billow.api_url, body["organization"]["api_key"])
    for family in CATALOG:
        assert _codes(other, f"/{family}")[1]["total_count"] == 0


def test_a_tax_counts_its_customers_plans_and_add_ons_from_counters(org: Org) -> None:
    _tax(org, "vat")
    _tax(org, "eco")
    status, body = org.api.post(
        "/customers",
        json={"customer": {"external_id": "taxed", "currency": "EUR", "tax_codes": ["vat"]}},
    )
    assert status == 200, body
    create_plan(org, "taxed-plan", 1000, tax_codes=["vat", "eco"])
    create_add_on(org, "taxed-add-on", 500, tax_codes=["eco"])

    def users(code: str) -> tuple[int, int, int]:
        status, body = org.api.get(f"/taxes/{code}")
        assert status == 200, body
        tax = body["tax"]
        return tax["customers_count"], tax["plans_count"], tax["add_ons_count"]

    def listed_users() -> dict[str, tuple[int, int, int]]:
        status, body = org.api.get("/taxes")
        assert status == 200, body
        return {
            tax["code"]: (tax["customers_count"], tax["plans_count"], tax["add_ons_count"])
            for tax in body["taxes"]
        }

    assert listed_users() == {"vat": (1, 1, 0), "eco": (0, 1, 1)}
    status, body = org.api.post(
        "/customers",
        json={"customer": {"external_id": "taxed", "currency": "EUR", "tax_codes": ["eco"]}},
    )
    assert status == 200, body
    status, body = org.api.delete("/plans/taxed-plan")
    assert status == 200, body
    assert listed_users() == {"vat": (0, 0, 0), "eco": (1, 0, 1)}
    assert users("eco") == (1, 0, 1)


def test_a_plan_shows_its_active_subscriptions_from_counters(org: Org) -> None:
    create_plan(org, "counted", 1000)
    for n in range(3):
        customer(org, f"s{n}")
        subscribe(org, f"s{n}-sub", f"s{n}", "counted")
    status, body = org.api.delete("/subscriptions/s1-sub")
    assert status == 200, body
    status, body = org.api.get("/plans")
    assert status == 200, body
    (plan,) = body["plans"]
    assert plan["active_subscriptions_count"] == 2


def test_changing_or_deleting_a_plan_reads_its_own_subscriptions_only(
    org: Org, local_billow: LocalRuntime
) -> None:
    """A plan's update learns from its counter whether it has subscriptions (its terms
    then stay) and how many are active; its deletion lists its live ones by its code. Before,
    each read every subscription of the organization."""
    create_plan(org, "busy", 1000)
    create_plan(org, "quiet", 2000)
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda n: (customer(org, f"b{n}"), subscribe(org, f"b{n}-sub", f"b{n}", "busy")),
                range(COUNTER_SHARDS + 4),
            )
        )
    customer(org, "q")
    subscribe(org, "q-sub", "q", "quiet")
    local_billow.wait_idle()

    with items_read() as calls:
        status, body = org.api.put("/plans/quiet", json={"plan": {"code": "q2", "name": "Q"}})
    assert status == 200, body
    assert (body["plan"]["code"], body["plan"]["name"]) == ("quiet", "Q")  # its terms stay
    assert body["plan"]["active_subscriptions_count"] == 1
    assert max(count for what, count in calls if what == "query") <= COUNTER_SHARDS

    with items_read() as calls:
        status, body = org.api.delete("/plans/quiet")
        assert status == 200, body
        local_billow.wait_idle()
    assert max(count for what, count in calls if what == "query") <= COUNTER_SHARDS
    status, body = org.api.get("/subscriptions/q-sub?status=terminated")
    assert status == 200, body
    assert body["subscription"]["status"] == "terminated"
    status, body = org.api.get("/subscriptions?plan_code=busy&per_page=100")
    assert status == 200, body
    assert body["meta"]["total_count"] == COUNTER_SHARDS + 4


def _apply(org: Any, customer_id: str, code: str) -> dict[str, Any]:
    status, body = org.api.post(
        "/applied_coupons",
        json={"applied_coupon": {"external_customer_id": customer_id, "coupon_code": code}},
    )
    assert status == 200, body
    return body["applied_coupon"]  # type: ignore[no-any-return]


def test_applied_coupons_are_listed_by_status_customer_and_code_from_keys(org: Org) -> None:
    for name in ("c1", "c2"):
        customer(org, name)
    _coupon(org, "ten-off")
    _coupon(org, "five-off")
    _apply(org, "c1", "ten-off")
    ended = _apply(org, "c2", "ten-off")
    _apply(org, "c1", "five-off")
    status, body = org.api.delete(f"/customers/c2/applied_coupons/{ended['lago_id']}")
    assert status == 200, body

    def shown(path: str) -> tuple[list[tuple[str, str, str]], int]:
        status, body = org.api.get(path)
        assert status == 200, (path, body)
        found = [
            (entry["external_customer_id"], entry["coupon_code"], entry["status"])
            for entry in body["applied_coupons"]
        ]
        return found, body["meta"]["total_count"]

    everything = [("c1", "five-off", "active"), ("c2", "ten-off", "terminated")]
    everything.append(("c1", "ten-off", "active"))
    assert shown("/applied_coupons") == (everything, 3)
    assert shown("/applied_coupons?status=active") == ([everything[0], everything[2]], 2)
    assert shown("/applied_coupons?status=terminated") == ([everything[1]], 1)
    assert shown("/applied_coupons?external_customer_id=c1") == (
        [everything[0], everything[2]],
        2,
    )
    assert shown("/applied_coupons?external_customer_id=nobody") == ([], 0)
    assert shown("/customers/c1/applied_coupons?coupon_code[]=ten-off") == ([everything[2]], 1)
    assert shown("/applied_coupons?coupon_code[]=ten-off&coupon_code[]=five-off") == (
        everything,
        3,
    )
    assert shown("/applied_coupons?coupon_code[]=ten-off&status=active") == ([everything[2]], 1)
    assert shown("/applied_coupons?per_page=1&page=2") == ([everything[1]], 3)

    # At 28 applied coupons, page 1 reads its keys, items and counters, never the list.
    for n in range(25):
        customer(org, f"many-{n}")
        _apply(org, f"many-{n}", "ten-off")
    with items_read() as calls:
        found, total = shown("/applied_coupons?per_page=2")
    assert len(found) == 2 and total == 28
    assert max(count for what, count in calls if what == "query") <= COUNTER_SHARDS
