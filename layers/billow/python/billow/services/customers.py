"""Customers: create or update (by external id), read, list, delete, checkout URLs."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from billow.adapters.table import Transaction
from billow.composition import Dependencies
from billow.domain.clock import iso, new_id, utcnow
from billow.domain.customers import (
    DEFAULT_BILLING_ENTITY,
    EDITABLE_FIELDS,
    SUPPORTED_PROVIDERS,
    Address,
    BillingConfiguration,
    Customer,
    CustomerMetadata,
    PaymentProvider,
)
from billow.domain.errors import (
    ConcurrentUpdate,
    NotFound,
    ProviderError,
    ValidationFailed,
    provider_rejection,
)
from billow.domain.events import OutboxEvent, webhook_event
from billow.domain.identifiers import Identifier, IdentifierList
from billow.domain.integrations import StripeConnection
from billow.domain.money import Currency
from billow.domain.profiles import Country, is_email_list
from billow.services import provider_sync
from billow.services.lookups import get_customer, require_taxes
from billow.services.stripe_connection import connection_for


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _emails(value: str | None) -> str | None:
    if value is not None and not is_email_list(value):
        raise ValueError("invalid_format")
    return value


def _timezone(value: str | None) -> str | None:
    if value is not None and value not in _timezones():
        raise ValueError("invalid_timezone")
    return value


ProviderPaymentMethod = Literal[
    "card",
    "sepa_debit",
    "us_bank_account",
    "bacs_debit",
    "link",
    "boleto",
    "crypto",
    "customer_balance",
]


class _Input(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class BillingConfigurationInput(_Input):
    invoice_grace_period: Annotated[int, Field(ge=0, le=365)] | None = None
    subscription_invoice_issuing_date_anchor: (
        Literal["current_period_end", "next_period_start"] | None
    ) = None
    subscription_invoice_issuing_date_adjustment: (
        Literal["align_with_finalization_date", "keep_anchor"] | None
    ) = None
    payment_provider: PaymentProvider | None = None
    payment_provider_code: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    provider_customer_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    sync: bool | None = None
    sync_with_provider: bool | None = None
    document_locale: Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = None
    provider_payment_methods: list[ProviderPaymentMethod] | None = None


class AddressInput(_Input):
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    country: Country | None = None
    state: str | None = None
    zipcode: str | None = None


class MetadataInput(_Input):
    key: Annotated[str, Field(min_length=1, max_length=20)]
    value: Annotated[str, Field(max_length=100)]
    display_in_invoice: bool = False


class CustomerInput(_Input):
    """Lago's CustomerCreateInput.customer."""

    external_id: Identifier
    billing_entity_code: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    country: Country | None = None
    currency: Currency | None = None
    email: Annotated[str | None, AfterValidator(_emails)] = None
    legal_name: str | None = None
    legal_number: str | None = None
    logo_url: str | None = None
    name: Annotated[str, Field(max_length=255)] | None = None
    firstname: str | None = None
    lastname: str | None = None
    account_type: Literal["customer", "partner"] | None = None
    customer_type: Literal["company", "individual"] | None = None
    phone: str | None = None
    state: str | None = None
    tax_identification_number: str | None = None
    timezone: Annotated[str | None, AfterValidator(_timezone)] = None
    url: str | None = None
    zipcode: str | None = None
    net_payment_term: Annotated[int, Field(ge=0, le=365)] | None = None
    finalize_zero_amount_invoice: Literal["inherit", "skip", "finalize"] | None = None
    skip_invoice_custom_sections: bool | None = None
    billing_configuration: BillingConfigurationInput | None = None
    shipping_address: AddressInput | None = None
    metadata: Annotated[list[MetadataInput], Field(max_length=5)] | None = None
    tax_codes: IdentifierList | None = None


class ProviderWork(BaseModel):
    """What has to happen in Stripe after a customer write."""

    action: Literal["create", "link", "update"]
    inline: bool


def _merge_billing(
    current: BillingConfiguration, given: BillingConfigurationInput | None
) -> BillingConfiguration:
    if given is None:
        return current
    defaults = BillingConfiguration()
    updates = {
        name: getattr(given, name) if getattr(given, name) is not None else getattr(defaults, name)
        for name in given.model_fields_set
    }
    return current.model_copy(update=updates)


def _metadata(
    given: list[MetadataInput], current: list[CustomerMetadata], now: str
) -> list[CustomerMetadata]:
    """Keep each key's lago_id and creation time across updates, as Lago does."""
    known = {entry.key: entry for entry in current}
    return [
        CustomerMetadata(
            lago_id=known[entry.key].lago_id if entry.key in known else new_id(),
            key=entry.key,
            value=entry.value,
            display_in_invoice=entry.display_in_invoice,
            created_at=known[entry.key].created_at if entry.key in known else now,
        )
        for entry in given
    ]


_DEFAULTED_FIELDS = frozenset(
    {
        "account_type",
        "billing_entity_code",
        "finalize_zero_amount_invoice",
        "skip_invoice_custom_sections",
        "tax_codes",
    }
)
"""Fields that fall back to their default rather than becoming null."""


def _apply(customer: Customer, given: CustomerInput, now: str) -> Customer:
    updates: dict[str, object] = {
        name: getattr(given, name)
        for name in given.model_fields_set & set(EDITABLE_FIELDS)
        if getattr(given, name) is not None or name not in _DEFAULTED_FIELDS
    }
    if given.shipping_address is not None:
        updates["shipping_address"] = Address.model_validate(given.shipping_address.model_dump())
    if given.metadata is not None:
        updates["metadata"] = _metadata(given.metadata, customer.metadata, now)
    updates["billing_configuration"] = _merge_billing(
        customer.billing_configuration, given.billing_configuration
    )
    return customer.model_copy(update=updates)


def _provider_work(
    deps: Dependencies, before: Customer | None, after: Customer
) -> tuple[Customer, ProviderWork | None]:
    """Validate the payment provider settings and decide what Stripe must learn."""
    billing = after.billing_configuration
    if billing.payment_provider is None:
        return after, None
    if billing.payment_provider not in SUPPORTED_PROVIDERS:
        raise ValidationFailed({"payment_provider": ["unsupported_payment_provider"]})
    connection = connection_for(deps, after.organization_id, billing.payment_provider_code)
    if connection is None:
        raise ValidationFailed({"payment_provider_code": ["payment_provider_not_found"]})
    # Unsaid, ``sync_with_provider`` follows the connection's ``create_customers``; the
    # customer keeps the answer, so it reads as the boolean Lago's contract promises.
    sync_with_provider = billing.sync_with_provider
    if sync_with_provider is None:
        sync_with_provider = connection.create_customers
    billing = billing.model_copy(
        update={"payment_provider_code": connection.code, "sync_with_provider": sync_with_provider}
    )
    after = after.model_copy(
        update={"billing_configuration": billing, "stripe_livemode": connection.livemode}
    )
    previous_id = before.billing_configuration.provider_customer_id if before else None
    inline = bool(billing.sync)
    if billing.provider_customer_id and billing.provider_customer_id != previous_id:
        _require_stripe_customer(deps, connection, billing.provider_customer_id)
        return after, ProviderWork(action="link", inline=inline)
    if not billing.provider_customer_id:
        if sync_with_provider:
            return after, ProviderWork(action="create", inline=inline)
        return after, None
    if before is not None and before.stripe_profile() != after.stripe_profile():
        return after, ProviderWork(action="update", inline=False)
    return after, None


def _require_stripe_customer(
    deps: Dependencies, connection: StripeConnection, stripe_id: str
) -> None:
    """A Stripe customer to link must be in the organization's connected Stripe account,
    and not deleted. Checked before anything is stored: a mistyped id, or one from another
    Stripe account, is a 422 now instead of a customer no invoice can ever be charged to."""
    try:
        found = deps.stripe_for(connection).retrieve_customer(stripe_id)
    except ProviderError as error:
        if error.retryable:
            raise
        raise provider_rejection(error, "provider_customer_id") from error
    if found.deleted:
        deleted = ProviderError(
            f"The Stripe customer '{stripe_id}' is deleted.",
            kind="invalid_request",
            code="customer_deleted",
        )
        raise provider_rejection(deleted, "provider_customer_id")


def upsert_customer(deps: Dependencies, organization_id: str, given: CustomerInput) -> Customer:
    """Lago's create-or-update by external id; provider work follows, inline or queued."""
    if given.billing_entity_code not in (None, DEFAULT_BILLING_ENTITY):
        raise NotFound("billing_entity")
    if given.tax_codes is not None:
        taxes = require_taxes(deps, organization_id, given.tax_codes)
        given = given.model_copy(update={"tax_codes": [tax.code for tax in taxes]})
    for _ in range(3):
        before = deps.store.customers.get(organization_id, given.external_id)
        now = iso(utcnow())
        if before is None:
            sequence = deps.store.organizations.next_customer_sequence(organization_id)
            organization = deps.store.organizations.get(organization_id)
            prefix = organization.document_number_prefix if organization else "CUS"
            blank = Customer(
                lago_id=new_id(),
                organization_id=organization_id,
                external_id=given.external_id,
                sequential_id=sequence,
                slug=f"{prefix}-{sequence:03d}",
                created_at=now,
                updated_at=now,
            )
            after = _apply(blank, given, now)
        else:
            after = _apply(before, given, now).model_copy(
                update={"updated_at": now, "version": before.version + 1}
            )
        after, work = _provider_work(deps, before, after)
        events: list[OutboxEvent] = [
            webhook_event(
                organization_id,
                "customer.created" if before is None else "customer.updated",
                "customer",
                after.as_webhook_object(),
            )
        ]
        if work and not work.inline:
            events.append(provider_sync.sync_request(after, work.action))
        transaction = Transaction()
        deps.store.customers.stage(transaction, after, before)
        transaction.publish(events)
        try:
            deps.store.commit(transaction)
        except ConcurrentUpdate:
            continue
        if work and work.inline:
            after = provider_sync.sync_inline(deps, after, work.action)
        return after
    raise ConcurrentUpdate(f"customer {given.external_id} kept changing")


def present(deps: Dependencies, customers: Sequence[Customer]) -> list[dict[str, object]]:
    """Customers as Lago shows them, with their taxes (one Query, only if any has some)."""
    taxes = (
        {tax.code: tax for tax in deps.store.taxes.list_all(customers[0].organization_id)}
        if any(customer.tax_codes for customer in customers)
        else {}
    )
    return [
        customer.as_lago([taxes[code] for code in customer.tax_codes if code in taxes])
        for customer in customers
    ]


def list_page(
    deps: Dependencies, organization_id: str, page: int, per_page: int
) -> tuple[list[Customer], int]:
    """Page ``page`` of the customers, newest first, and how many there are (reads the
    list keys before the page and the page's customers only)."""
    skip = (page - 1) * per_page
    found = deps.store.customers.list_page(organization_id, skip, per_page)
    return found, deps.store.customers.count(organization_id)


def delete_customer(deps: Dependencies, organization_id: str, external_id: str) -> Customer:
    """Deletes Billow's customer and its payment methods; the Stripe customer stays (as in Lago)."""
    customer = get_customer(deps, organization_id, external_id)
    deps.store.customers.delete(customer, deps.store.payment_methods.list_for(customer))
    return customer


def checkout_url(deps: Dependencies, organization_id: str, external_id: str) -> dict[str, object]:
    """A fresh Stripe Checkout (setup mode) URL; synchronous, no webhook (as in Lago)."""
    customer = get_customer(deps, organization_id, external_id)
    billing = customer.billing_configuration
    connection = (
        deps.store.connections.get(organization_id, billing.payment_provider_code)
        if customer.uses_stripe and billing.payment_provider_code
        else None
    )
    if connection is None or not customer.stripe_customer_id:
        raise ValidationFailed(
            {"payment_provider_customer": ["value_is_mandatory"]},
            code="missing_payment_provider_customer",
        )
    try:
        url = provider_sync.create_checkout(deps, connection, customer, request_key=new_id())
    except ProviderError as error:
        if error.retryable:
            raise
        raise provider_rejection(error, "payment_provider") from error
    return {
        "lago_customer_id": customer.lago_id,
        "external_customer_id": customer.external_id,
        "payment_provider": "stripe",
        "payment_provider_code": connection.code,
        "checkout_url": url,
    }
