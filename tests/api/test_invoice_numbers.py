"""Invoice numbers: gap-free and once each, with concurrent issuers that never race for them.

Issuers commit an invoice aside and the organization's one numberer (whoever holds its
lease) gives numbers in batches; these tests drive the invoice worker's service from many
threads, hold the lease as a numberer at work would, and let one stop half-way.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billow.adapters.table import TableBase
from billow.composition import dependencies
from billow.domain.errors import ConcurrentUpdate
from billow.services import invoice_numbering
from billow.services.billing_run import DueSubscription
from billow.services.invoice_work import work
from billow.services.retries import retry_on_race
from tests.api.billing_helpers import create_plan, invoices_of, webhooks

STARTED = datetime(2031, 3, 1, tzinfo=UTC)
DUE = datetime(2031, 4, 1, 1, tzinfo=UTC)


def _subscribe(org: Any, count: int) -> list[DueSubscription]:
    create_plan(org, "numbered", amount_cents=2500)
    due = []
    for index in range(count):
        external_id = f"numbered-{index}"
        status, body = org.api.post(
            "/customers", json={"customer": {"external_id": external_id, "currency": "EUR"}}
        )
        assert status == 200, body
        status, body = org.api.post(
            "/subscriptions",
            json={
                "subscription": {
                    "external_customer_id": external_id,
                    "plan_code": "numbered",
                    "external_id": f"{external_id}-sub",
                    "subscription_at": STARTED.isoformat(),
                }
            },
        )
        assert status == 200, body
        due.append(
            DueSubscription(
                organization_id=org.id,
                external_id=f"{external_id}-sub",
                lago_id=body["subscription"]["lago_id"],
                now=DUE.isoformat(),
            )
        )
    return due


def _all_invoices(org: Any) -> list[dict[str, Any]]:
    status, body = org.api.get("/invoices?per_page=100")
    assert status == 200, body
    return body["invoices"]  # type: ignore[no-any-return]


def _sequence_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many sequence numbers each committed transaction took (0 for an issuer's)."""
    taken: list[int] = []
    original = TableBase.commit

    def recorded(store: TableBase, transaction: Any) -> None:
        original(store, transaction)
        for action in transaction.actions:
            update = action.get("Update", {})
            if update.get("Key", {}).get("SK") == "INVOICE_SEQUENCE" and "#value" in str(
                update.get("UpdateExpression")
            ):
                taken.append(len([a for a in transaction.actions if _is_invoice_put(a)]))

    monkeypatch.setattr(TableBase, "commit", recorded)
    return taken


def _is_invoice_put(action: dict[str, Any]) -> bool:
    return str(action.get("Put", {}).get("Item", {}).get("SK", "")).startswith("INVOICE#")


def test_concurrent_workers_number_every_invoice_once_without_a_gap_racing_once_at_most(
    org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = _subscribe(org, 24)
    conflicts: list[str] = []
    original = TableBase.commit

    def counted(store: TableBase, transaction: Any) -> None:
        try:
            original(store, transaction)
        except ConcurrentUpdate:
            conflicts.append(str(transaction.actions[0]))
            raise

    monkeypatch.setattr(TableBase, "commit", counted)
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda one: work(dependencies(), one), due))
    assert all(outcomes)
    invoices = _all_invoices(org)
    assert sorted(invoice["sequential_id"] for invoice in invoices) == list(range(1, 25))
    assert len({invoice["number"] for invoice in invoices}) == 24
    assert sorted(i["fees"][0]["external_subscription_id"] for i in invoices) == sorted(
        one.external_id for one in due
    )
    # A worker tries to number its own invoice until it first sees others at work (a race
    # lost, or the lease held); from then on it sets its invoices aside for the numberer.
    # So the sequence loses at most one race per worker, whatever the number of invoices.
    sequence_races = [c for c in conflicts if "INVOICE_SEQUENCE" in c and "#value" in c]
    assert len(sequence_races) < 12


def test_an_invoice_issued_while_a_numberer_works_waits_unseen_then_gets_the_next_number(
    org: Any, local_billow: Any, webhook_receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, body = org.api.post(
        "/webhook_endpoints",
        json={"webhook_endpoint": {"webhook_url": webhook_receiver.url, "signature_algo": "hmac"}},
    )
    assert status == 200, body
    first, second = _subscribe(org, 2)
    taken = _sequence_writes(monkeypatch)
    store = dependencies().store
    now = int(time.time() * 1000)
    assert store.numbering.take_lease(org.id, "a numberer at work", now, now + 60_000)

    work(dependencies(), first)
    work(dependencies(), second)
    local_billow.wait_idle()

    # Issued (the subscriptions moved on) but not shown, numbered or announced yet.
    assert invoices_of(org, "numbered-0") == [] and invoices_of(org, "numbered-1") == []
    assert webhooks(webhook_receiver, "invoice.created") == []
    assert len(store.numbering.list_waiting(org.id, 10)) == 2
    assert taken == []

    # The numberer's last look after it lets go numbers both, in one transaction.
    store.numbering.release_lease(org.id, "a numberer at work")
    numbered = invoice_numbering.number_waiting(dependencies(), org.id)
    assert sorted(invoice.sequential_id for invoice in numbered.values()) == [1, 2]
    assert taken == [2]
    local_billow.wait_idle()
    assert {i["sequential_id"] for i in _all_invoices(org)} == {1, 2}
    created = webhooks(webhook_receiver, "invoice.created")
    assert sorted(hook["invoice"]["sequential_id"] for hook in created) == [1, 2]
    assert all(not hook["invoice"]["number"].endswith("DRAFT") for hook in created)


def test_invoices_a_stopped_numberer_left_waiting_are_numbered_by_the_hourly_sweep(
    org: Any, local_billow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (due,) = _subscribe(org, 1)
    store = dependencies().store
    now = int(time.time() * 1000)
    # A numberer that took the lease and died: it holds it for a moment more.
    held_until = now + 3_000
    assert store.numbering.take_lease(org.id, "a numberer that died", now, held_until)
    work(dependencies(), due)
    assert len(store.numbering.list_waiting(org.id, 10)) == 1
    monkeypatch.setattr(invoice_numbering, "STRANDED_AFTER", timedelta(0))
    # The lease lapses, and the waiting invoice is older than the cutoff (whole seconds).
    time.sleep(max(0.0, held_until / 1000 - time.time()) + 1.1)

    result = local_billow.fire_schedule("billing-run", DUE + timedelta(hours=1))

    assert result["numbered"] >= 1
    assert store.numbering.list_waiting(org.id, 10) == []
    (invoice,) = _all_invoices(org)
    assert invoice["sequential_id"] == 1


def test_a_one_off_invoice_answers_with_its_number_even_while_another_numberer_works(
    org: Any,
) -> None:
    status, body = org.api.post(
        "/add_ons",
        json={
            "add_on": {
                "code": "setup",
                "name": "Setup",
                "amount_cents": 900,
                "amount_currency": "EUR",
            }
        },
    )
    assert status == 200, body
    status, body = org.api.post(
        "/customers", json={"customer": {"external_id": "one-off", "currency": "EUR"}}
    )
    assert status == 200, body
    store = dependencies().store
    now = int(time.time() * 1000)
    assert store.numbering.take_lease(org.id, "busy", now, now + 60_000)
    # The other numberer finishes a moment later and takes one last look.
    finish = threading.Timer(
        0.3,
        lambda: (
            store.numbering.release_lease(org.id, "busy"),
            invoice_numbering.number_waiting(dependencies(), org.id),
        ),
    )
    finish.start()
    try:
        status, body = org.api.post(
            "/invoices",
            json={
                "invoice": {"external_customer_id": "one-off", "fees": [{"add_on_code": "setup"}]}
            },
        )
    finally:
        finish.join()
    assert status == 200, body
    assert body["invoice"]["sequential_id"] == 1
    assert body["invoice"]["number"].endswith("-001")


def test_two_numberers_at_once_still_give_each_number_once(
    org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease only spares races; if two numberers overlap (one's lease ran out while
    it worked), the sequence's condition makes one of them read again."""
    due = _subscribe(org, 8)
    store = dependencies().store
    now = int(time.time() * 1000)
    assert store.numbering.take_lease(org.id, "holds everyone off", now, now + 60_000)
    for one in due:
        work(dependencies(), one)
    organization = store.organizations.get(org.id)
    assert organization is not None
    start = threading.Barrier(2)

    def numberer() -> dict[str, Any]:
        numbered: dict[str, Any] = {}
        start.wait()
        while batch := retry_on_race(
            lambda: invoice_numbering._number_next(dependencies(), organization)
        ):
            numbered.update(batch)
        return numbered

    monkeypatch.setattr(invoice_numbering, "BATCH", 3)
    try:
        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(lambda _: numberer(), range(2))
    finally:
        store.numbering.release_lease(org.id, "holds everyone off")
    assert not set(first) & set(second)
    assert sorted(i.sequential_id for i in [*first.values(), *second.values()]) == list(range(1, 9))
    assert sorted(invoice["sequential_id"] for invoice in _all_invoices(org)) == list(range(1, 9))
