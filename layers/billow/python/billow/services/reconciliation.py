"""The hourly reconciliation with Stripe (the ``stripe-events-sweep`` schedule).

Webhooks are at-least-once only while everything works: Stripe gives up on an endpoint
after days of failures, a consumer's message can end in a DLQ, a charge can crash after
Stripe answered. Each hour, for every organization, the sweep:

1. asks each connected Stripe account for the events created since its last look and
   feeds those Billow never stored into the intake (``events_recovered``);
2. re-publishes stored events still unprocessed after a quarter of an hour
   (``events_republished``);
3. looks up in Stripe every charge attempt Stripe has been silent about for an hour and
   settles it from Stripe's answer (``payments_settled``), or asks again for the attempts
   Stripe never saw, under their own idempotency keys (``attempts_redriven``).

Every step is idempotent, so running the sweep twice repairs nothing the second time. What
it repaired is returned per organization: the handler logs it and turns it into metrics,
and an alarm fires when anything needed repairing, since that means something upstream
is losing work.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime

from pydantic import BaseModel

from billow.composition import Dependencies
from billow.domain.clock import iso
from billow.domain.errors import ProviderError
from billow.services.payments.attempts import (
    IN_FLIGHT_GRACE,
    reconcile_attempt,
    redrive_attempt,
)
from billow.services.payments.settlement import UnmatchedPayment, report_unmatched
from billow.services.stripe_events import recover_events, republish_unprocessed

logger = logging.getLogger(__name__)

QUIET_ATTEMPTS_PER_RUN = 1_000
"""At most this many silent attempts are looked up in Stripe per run (about one Stripe read
each), oldest first within each index shard: after a huge billing run whose charges queue
for more than an hour, the lookups spread over the following hours instead of tripping
Stripe's rate limits or the function's timeout. An attempt looked up is settled or asked
for again (which restarts its hour), so the backlog shrinks every run."""


class Repairs(BaseModel):
    """What the sweep found wrong in one organization, and put right."""

    organization_id: str
    events_recovered: int = 0
    events_republished: int = 0
    payments_settled: int = 0
    attempts_redriven: int = 0
    accounts_unreachable: int = 0
    failures: int = 0
    """Steps that failed unexpectedly (logged with their traceback); the others went on."""
    """Connected Stripe accounts the sweep could not read (a revoked key, an outage)."""

    @property
    def repaired(self) -> int:
        return (
            self.events_recovered
            + self.events_republished
            + self.payments_settled
            + self.attempts_redriven
        )


class SweepReport(BaseModel):
    organizations: list[Repairs]
    """Only the organizations where something was repaired or unreachable."""

    def total(self, field: str) -> int:
        return sum(int(getattr(repairs, field)) for repairs in self.organizations)

    @property
    def repaired(self) -> int:
        return sum(repairs.repaired for repairs in self.organizations)


def _repairs(found: dict[str, Repairs], organization_id: str) -> Repairs:
    return found.setdefault(organization_id, Repairs(organization_id=organization_id))


def sweep(deps: Dependencies, now: datetime) -> SweepReport:
    """Reconcile every organization. One that fails unexpectedly (a bug, a stored event
    Billow cannot read) is logged and counted, and the others are still reconciled: the
    next hour looks at it again, and the ``reconciliation-failures`` alarm says so."""
    found: dict[str, Repairs] = {}
    for organization_id in deps.store.organizations.list_ids():
        try:
            _reconcile_organization(deps, organization_id, now, found)
        except Exception:
            logger.exception("Reconciliation failed", extra={"organization_id": organization_id})
            _repairs(found, organization_id).failures += 1
    _settle_quiet_attempts(deps, now, found)
    return SweepReport(organizations=list(found.values()))


def _reconcile_organization(
    deps: Dependencies, organization_id: str, now: datetime, found: dict[str, Repairs]
) -> None:
    for connection in deps.store.connections.list_all(organization_id):
        try:
            recovered = recover_events(deps, connection, now)
        except ProviderError as error:
            # One account out of reach (its key revoked, Stripe down) must not stop the
            # others; its cursor stays, so the next hour looks again from there.
            logger.warning(
                "Stripe events unreadable",
                extra={"organization_id": organization_id, "error": error.message},
            )
            _repairs(found, organization_id).accounts_unreachable += 1
            continue
        if recovered:
            _repairs(found, organization_id).events_recovered += recovered
    republished = republish_unprocessed(deps, organization_id, now)
    if republished:
        _repairs(found, organization_id).events_republished += republished


def _settle_quiet_attempts(deps: Dependencies, now: datetime, found: dict[str, Repairs]) -> None:
    quiet = deps.store.invoices.list_payments_in_flight(iso(now - IN_FLIGHT_GRACE))
    for item in itertools.islice(quiet, QUIET_ATTEMPTS_PER_RUN):
        organization_id = str(item["organization_id"])
        invoice = deps.store.invoices.get(organization_id, str(item["lago_id"]))
        if invoice is None or not invoice.payment_in_flight:
            continue
        try:
            outcome = reconcile_attempt(deps, invoice)
        except UnmatchedPayment as unmatched:
            report_unmatched(deps, unmatched)
            continue
        except ProviderError as error:
            if error.retryable:
                continue  # Stripe is unavailable: the next hour asks again
            # Stripe refuses this account's key: asking for the attempt again makes the
            # charge meet the same refusal, which fails the attempt visibly.
            outcome = "not_in_stripe"
        except Exception:
            logger.exception(
                "Reconciling a charge attempt failed",
                extra={"organization_id": organization_id, "invoice_id": invoice.lago_id},
            )
            _repairs(found, organization_id).failures += 1
            continue
        if outcome == "settled":
            _repairs(found, organization_id).payments_settled += 1
        elif outcome == "not_in_stripe":
            redrive_attempt(deps, invoice, now)
            _repairs(found, organization_id).attempts_redriven += 1
