"""A customer's payment methods: Billow's copy of what Stripe holds for them.

Billow changes the default on request (``set_as_default``, ``DELETE``) and learns of other
changes from Stripe's events, which arrive late, twice and out of order. The default never
moves backwards:

- An explicit choice is written to Stripe before Billow records it, with the time it began;
  a Stripe event older than the choice never overrides it (``DefaultPaymentMethodState``).
- A card saved through checkout or a setup intent becomes the default unless a newer fact
  already decided the default; if it does not, it is listed and Stripe is left alone.
- ``customer.updated`` is a hint, not the truth: a default it names that Billow does not
  hold is checked against Stripe's current one, which is applied.
- A deleted card is detached in Stripe, and a card Stripe reports detached is never added
  back, whatever the order its events arrive in.

Every change is one read-decide-write over the customer's ``DefaultPaymentMethodState``,
read first and written with the version read: a change that raced another fails its write
and is decided again on fresh reads (``retry_on_race``, or the queue for events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, stable_id, utcnow
from billow.domain.customers import (
    Customer,
    DefaultPaymentMethodState,
    PaymentMethod,
    detach_key,
    is_own_request,
)
from billow.domain.errors import NotFound, ProviderError, provider_rejection
from billow.domain.integrations import StripeConnection
from billow.domain.payments import Applied
from billow.ports import CardDetails, PaymentProvider
from billow.services.lookups import get_customer
from billow.services.payments.attempts import stage_awaiting_invoices
from billow.services.retries import retry_on_race
from billow.services.stripe_connection import stripe_account


def list_payment_methods(
    deps: Dependencies, organization_id: str, external_id: str
) -> list[PaymentMethod]:
    return deps.store.payment_methods.list_for(get_customer(deps, organization_id, external_id))


def _find(methods: list[PaymentMethod], lago_id: str) -> PaymentMethod:
    for method in methods:
        if method.lago_id == lago_id:
            return method
    raise NotFound("payment_method")


def _with_default(methods: list[PaymentMethod], default_id: str | None) -> list[PaymentMethod]:
    return [
        method.model_copy(update={"is_default": method.lago_id == default_id}) for method in methods
    ]


def _lago_id(customer: Customer, provider_method_id: str) -> str:
    """Derived from the Stripe id, so two deliveries of the same fact make one method."""
    return stable_id("payment_method", customer.organization_id, provider_method_id)


@dataclass(frozen=True)
class _Snapshot:
    """A customer's payment methods as read, and the state that orders changes to them."""

    state: DefaultPaymentMethodState
    methods: list[PaymentMethod]

    @property
    def default(self) -> PaymentMethod | None:
        return next((method for method in self.methods if method.is_default), None)

    def by_stripe_id(self, provider_method_id: str) -> PaymentMethod | None:
        return next((m for m in self.methods if m.provider_method_id == provider_method_id), None)


def _read(deps: Dependencies, customer: Customer) -> _Snapshot:
    state = deps.store.payment_methods.get_default_state(customer)  # first: see _stage
    return _Snapshot(state, deps.store.payment_methods.list_for(customer))


def _stage(
    deps: Dependencies,
    transaction: Transaction,
    read: _Snapshot,
    methods: list[PaymentMethod],
    **state_changes: Any,
) -> None:
    """Stage ``methods`` as the customer's payment methods. The state is read before the
    methods and written expecting the version read, so the write fails if anything changed
    the methods since (even between the two reads). It carries the default's copy, written
    with the methods, so the two never disagree."""
    deps.store.payment_methods.stage_replacement(transaction, read.methods, methods)
    state = read.state.model_copy(
        update={
            **state_changes,
            "version": read.state.version + 1,
            "default_method": next((method for method in methods if method.is_default), None),
            "holds_default": True,
        }
    )
    deps.store.payment_methods.stage_default_state(
        transaction, state, expected_version=read.state.version
    )


def _stage_removal(
    deps: Dependencies, transaction: Transaction, read: _Snapshot, removed: PaymentMethod
) -> None:
    chosen = read.state.chosen_method_id
    _stage(
        deps,
        transaction,
        read,
        [method for method in read.methods if method.lago_id != removed.lago_id],
        chosen_method_id=None if chosen == removed.lago_id else chosen,
    )


def set_as_default(
    deps: Dependencies, organization_id: str, external_id: str, lago_id: str
) -> PaymentMethod:
    """The customer's explicit choice, their latest word: Stripe's default first, then
    Billow's, recorded with the second the choice began (before the Stripe write)."""
    customer = get_customer(deps, organization_id, external_id)
    chosen_at = int(utcnow().timestamp())
    return retry_on_race(lambda: _choose(deps, customer, lago_id, chosen_at))


def _choose(deps: Dependencies, customer: Customer, lago_id: str, chosen_at: int) -> PaymentMethod:
    read = _read(deps, customer)
    method = _find(read.methods, lago_id)
    if method.is_default and read.state.chosen_method_id == lago_id:
        return method  # a repeated request: already the standing choice, in Stripe too
    account = stripe_account(deps, customer)
    if account is not None:
        assert customer.stripe_customer_id
        try:
            account[1].set_default_payment_method(
                customer.stripe_customer_id,
                method.provider_method_id,
                idempotency_key=read.state.default_write_key(method.lago_id),
            )
        except ProviderError as error:
            if error.retryable:
                raise
            raise provider_rejection(error, "payment_method") from error
    after = _with_default(read.methods, lago_id)
    transaction = Transaction()
    _stage(deps, transaction, read, after, chosen_method_id=lago_id, chosen_at=chosen_at)
    # Invoices left waiting for a default (the previous one was deleted) are charged now.
    transaction.publish(stage_awaiting_invoices(deps, transaction, customer))
    deps.store.commit(transaction)
    return _find(after, lago_id)


def delete_payment_method(
    deps: Dependencies, organization_id: str, external_id: str, lago_id: str
) -> PaymentMethod:
    """Lago only forgets the method. Billow also detaches it in Stripe: Stripe then stops
    offering it (and drops it as its default, as Billow does), and every late event about
    it finds it detached, so nothing brings it back. Like Lago, no other card becomes the
    default, and the method is returned as no longer the default."""
    customer = get_customer(deps, organization_id, external_id)
    removed = _find(deps.store.payment_methods.list_for(customer), lago_id)
    account = stripe_account(deps, customer)
    if account is not None:
        _detach(account[1], customer, removed)

    def forget() -> None:
        read = _read(deps, customer)
        current = next((m for m in read.methods if m.lago_id == lago_id), None)
        if current is None:
            return  # Stripe's payment_method.detached got here first
        transaction = Transaction()
        _stage_removal(deps, transaction, read, current)
        deps.store.commit(transaction)

    retry_on_race(forget)
    return removed.model_copy(update={"is_default": False})


def _detach(gateway: PaymentProvider, customer: Customer, method: PaymentMethod) -> None:
    try:
        gateway.detach_payment_method(method.provider_method_id, idempotency_key=detach_key(method))
    except ProviderError as error:
        if error.retryable:
            raise
        if _attached(gateway, customer, method.provider_method_id):
            raise provider_rejection(error, "payment_method") from error
        # Already detached in Stripe (or gone): only Billow's copy is left to forget.


def _attached(gateway: PaymentProvider, customer: Customer, provider_method_id: str) -> bool:
    try:
        return gateway.payment_method(provider_method_id).customer == customer.stripe_customer_id
    except ProviderError as error:
        if error.retryable:
            raise
        return False


def _stage_card(
    deps: Dependencies,
    transaction: Transaction,
    connection: StripeConnection,
    customer: Customer,
    read: _Snapshot,
    card: CardDetails,
    make_default: bool,
    **state_changes: Any,
) -> None:
    """Stage adding (or refreshing) a Stripe payment method. A customer without a default
    gets this one as its default whatever ``make_default`` says."""
    lago_id = _lago_id(customer, card.provider_method_id)
    existing = next((method for method in read.methods if method.lago_id == lago_id), None)
    method = PaymentMethod(
        lago_id=lago_id,
        organization_id=customer.organization_id,
        external_customer_id=customer.external_id,
        customer_lago_id=customer.lago_id,
        is_default=existing.is_default if existing else False,
        payment_provider_code=connection.code,
        payment_provider_name=connection.name,
        provider_method_id=card.provider_method_id,
        provider_method_type=card.type,
        details=card.model_dump(exclude={"provider_method_id", "type", "created", "customer"}),
        created_at=existing.created_at if existing else iso(utcnow()),
    )
    after = [m for m in read.methods if m.lago_id != lago_id] + [method]
    if make_default or not any(m.is_default for m in after):
        after = _with_default(after, lago_id)
    if _find(after, lago_id).is_default and not method.is_default:
        state_changes.setdefault("chosen_method_id", None)  # no longer the explicit choice
    if sorted(after, key=_by_id) == sorted(read.methods, key=_by_id) and not state_changes:
        return  # the same fact again (checkout and setup intent both report a save)
    _stage(deps, transaction, read, after, **state_changes)
    transaction.publish(stage_awaiting_invoices(deps, transaction, customer))


def _by_id(method: PaymentMethod) -> str:
    return method.lago_id


def import_stripe_default(
    deps: Dependencies, connection: StripeConnection, gateway: PaymentProvider, customer: Customer
) -> None:
    """Linking a Stripe customer brings in the card Stripe names as its default (else its
    newest card) as Billow's default. Stripe is read after Billow, so a write that lost a
    race with an event reads both again. No event time is recorded: a later
    ``customer.updated`` is still checked against Stripe's current default."""
    assert customer.stripe_customer_id
    stripe_id = customer.stripe_customer_id

    def record() -> None:
        read = _read(deps, customer)
        card = gateway.default_payment_method(stripe_id)
        if card is None:
            return
        transaction = Transaction()
        _stage_card(deps, transaction, connection, customer, read, card, make_default=True)
        if transaction.actions:  # nothing when an event brought the same card in first
            deps.store.commit(transaction)

    retry_on_race(record)


def stage_saved_card(
    deps: Dependencies,
    transaction: Transaction,
    connection: StripeConnection,
    gateway: PaymentProvider,
    customer: Customer,
    provider_method_id: str,
    created: int,
) -> Applied:
    """A card saved through checkout or a setup intent, by an event stamped ``created``.

    Stripe is asked what it holds first: a card no longer attached to the customer was
    detached since (deleted through Billow or in Stripe) and is never added back. The card
    becomes the default, in Stripe and in Billow, unless the customer chose a default since
    it was saved or a newer Stripe fact set it (``saved_card_yields``), or Stripe holds a
    default Billow has not heard of yet: Billow never overwrites a change whose event is
    still on its way. Otherwise it is listed and Stripe's default is left alone.
    """
    card = gateway.payment_method(provider_method_id)
    if card.customer != customer.stripe_customer_id:
        return "ignored"
    read = _read(deps, customer)
    known = read.by_stripe_id(provider_method_id)
    current = read.default
    make_default = (known is None or not known.is_default) and not (
        current is not None and read.state.saved_card_yields(created)
    )
    if make_default:
        assert customer.stripe_customer_id
        in_stripe = gateway.invoice_default_card(customer.stripe_customer_id)
        expected = {provider_method_id, current.provider_method_id if current else None}
        if in_stripe is not None and in_stripe.provider_method_id not in expected:
            make_default = False
    if make_default:
        assert customer.stripe_customer_id
        gateway.set_default_payment_method(
            customer.stripe_customer_id,
            provider_method_id,
            idempotency_key=read.state.default_write_key(_lago_id(customer, provider_method_id)),
        )
    changes = {"default_seen_at": max(read.state.default_seen_at, created)} if make_default else {}
    _stage_card(deps, transaction, connection, customer, read, card, make_default, **changes)
    return "processed"


def stage_provider_method_removal(
    deps: Dependencies, transaction: Transaction, customer: Customer, provider_method_id: str
) -> Applied:
    """Stripe's ``payment_method.detached``: final, so it applies whenever it arrives."""
    read = _read(deps, customer)
    removed = read.by_stripe_id(provider_method_id)
    if removed is None:
        return "ignored"
    _stage_removal(deps, transaction, read, removed)
    return "processed"


def stage_stripe_default(
    deps: Dependencies,
    transaction: Transaction,
    connection: StripeConnection,
    gateway: PaymentProvider,
    customer: Customer,
    named_method_id: str,
    created: int,
    idempotency_key: object,
) -> Applied:
    """Stripe's ``customer.updated``, stamped ``created``, names ``named_method_id`` as the
    default; ``idempotency_key`` is that of the request that caused it.

    Ignored when it predates the default Billow holds (``predates_default``) or names it.
    Otherwise the event may be a snapshot overtaken by later changes, so Stripe's current
    default decides, read now. Someone else's change (the dashboard) is applied. Billow's
    own echo never changes Billow: if Stripe still holds the card it names, one of Billow's
    writes landed after a later one (two raced), and Billow's default is written back.
    """
    read = _read(deps, customer)
    current = read.default
    if read.state.predates_default(created):
        return "ignored"
    if current is not None and current.provider_method_id == named_method_id:
        return "processed"
    assert customer.stripe_customer_id
    in_stripe = gateway.invoice_default_card(customer.stripe_customer_id)
    if in_stripe is None or (
        current is not None and in_stripe.provider_method_id == current.provider_method_id
    ):
        return "ignored"  # Stripe holds Billow's default (again), or none at all
    if is_own_request(idempotency_key):
        if current is None or in_stripe.provider_method_id != named_method_id:
            return "ignored"  # someone else changed it since: that change's event decides
        gateway.set_default_payment_method(
            customer.stripe_customer_id,
            current.provider_method_id,
            idempotency_key=read.state.default_write_key(current.lago_id),
        )
        # A new version: the write-back holds only if nothing changed since, and a request
        # retried later (whose first attempt this may have undone) gets a new key.
        _stage(deps, transaction, read, read.methods)
        return "processed"
    seen_at = max(read.state.default_seen_at, created)
    _stage_card(
        deps,
        transaction,
        connection,
        customer,
        read,
        in_stripe,
        make_default=True,
        default_seen_at=seen_at,
    )
    return "processed"
