"""Customers, their billing configuration and payment methods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from billow.domain.catalog import Tax
from billow.domain.stripe_sync import (
    NO_STRIPE_PROVIDER,
    SyncError,
    dashboard_url,
    not_synced,
    pending,
    sync_view,
)

PaymentProvider = Literal["stripe", "adyen", "gocardless"]
SUPPORTED_PROVIDERS: frozenset[str] = frozenset({"stripe"})


DEFAULT_BILLING_ENTITY = "default"
"""Billow has one billing entity per organization (Lago's default entity)."""


class BillingConfiguration(BaseModel):
    invoice_grace_period: int = 0
    subscription_invoice_issuing_date_anchor: str | None = None
    subscription_invoice_issuing_date_adjustment: str | None = None
    payment_provider: PaymentProvider | None = None
    payment_provider_code: str | None = None
    provider_customer_id: str | None = None
    sync: bool = False
    sync_with_provider: bool | None = None
    """Whether Billow creates the customer in the provider; decided (from the connection's
    ``create_customers`` when not given) once a payment provider is set."""
    document_locale: str = "en"
    provider_payment_methods: list[str] | None = None


class Address(BaseModel):
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    country: str | None = None
    state: str | None = None
    zipcode: str | None = None


class CustomerMetadata(BaseModel):
    lago_id: str
    key: str
    value: str
    display_in_invoice: bool
    created_at: str


class ErrorDetail(BaseModel):
    """A background failure kept on the customer (Lago's ``error_details``)."""

    lago_id: str
    error_code: str
    details: dict[str, object]


# Fields a caller may set on a customer (Lago's CustomerCreateInput, minus nested objects).
EDITABLE_FIELDS: tuple[str, ...] = (
    "billing_entity_code",
    "address_line1",
    "address_line2",
    "city",
    "country",
    "currency",
    "email",
    "legal_name",
    "legal_number",
    "logo_url",
    "name",
    "firstname",
    "lastname",
    "account_type",
    "customer_type",
    "phone",
    "state",
    "tax_identification_number",
    "timezone",
    "url",
    "zipcode",
    "net_payment_term",
    "finalize_zero_amount_invoice",
    "skip_invoice_custom_sections",
    "tax_codes",
)


class Customer(BaseModel):
    lago_id: str
    organization_id: str
    external_id: str
    sequential_id: int
    slug: str
    billing_entity_code: str = DEFAULT_BILLING_ENTITY
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    country: str | None = None
    currency: str | None = None
    email: str | None = None
    legal_name: str | None = None
    legal_number: str | None = None
    logo_url: str | None = None
    name: str | None = None
    firstname: str | None = None
    lastname: str | None = None
    account_type: str = "customer"
    customer_type: str | None = None
    phone: str | None = None
    state: str | None = None
    tax_identification_number: str | None = None
    timezone: str | None = None
    url: str | None = None
    zipcode: str | None = None
    net_payment_term: int | None = None
    finalize_zero_amount_invoice: str = "inherit"
    skip_invoice_custom_sections: bool = False
    tax_codes: list[str] = Field(default_factory=list)
    billing_configuration: BillingConfiguration = Field(default_factory=BillingConfiguration)
    shipping_address: Address = Field(default_factory=Address)
    metadata: list[CustomerMetadata] = Field(default_factory=list)
    error_details: list[ErrorDetail] = Field(default_factory=list)
    stripe_livemode: bool = False
    """Its Stripe connection uses a live key (dashboard links leave out ``/test``)."""
    created_at: str
    updated_at: str
    version: int = 0
    """Optimistic-locking counter; every write expects the version it read."""

    @property
    def uses_stripe(self) -> bool:
        return self.billing_configuration.payment_provider == "stripe"

    @property
    def stripe_customer_id(self) -> str | None:
        return self.billing_configuration.provider_customer_id if self.uses_stripe else None

    def stripe_profile(self) -> dict[str, object]:
        """What Billow keeps in step on the Stripe customer (Lago sends the same fields)."""
        profile: dict[str, object] = {
            "name": self.name or self.legal_name or "",
            "email": (self.email or "").split(",")[0].strip(),
            "phone": self.phone or "",
            "address": {
                "line1": self.address_line1 or "",
                "line2": self.address_line2 or "",
                "city": self.city or "",
                "state": self.state or "",
                "postal_code": self.zipcode or "",
                "country": self.country or "",
            },
        }
        return profile

    def as_lago(self, taxes: Sequence[Tax] = ()) -> dict[str, object]:
        """Lago's CustomerObjectExtended; ``taxes`` are the customer's ``tax_codes`` resolved
        (objects embedding a customer leave them out)."""
        body = self.model_dump(
            mode="json",
            exclude={
                "organization_id",
                "version",
                "tax_codes",
                "error_details",
                "stripe_livemode",
            },
        )
        billing = body["billing_configuration"]
        billing["sync_with_provider"] = bool(billing["sync_with_provider"])
        body["applicable_timezone"] = self.timezone or "UTC"
        body["integration_customers"] = []
        body["taxes"] = [tax.as_lago() for tax in taxes]
        body["applicable_invoice_custom_sections"] = []
        body["error_details"] = [detail.model_dump(mode="json") for detail in self.error_details]
        body["stripe_sync"] = self.stripe_sync()
        return body

    def stripe_sync(self) -> dict[str, object]:
        """Billow's ``stripe_sync`` for a customer: linked (``succeeded``), refused by
        Stripe (``failed``, with Stripe's words), on its way, or not a Stripe customer."""
        if not self.uses_stripe:
            return not_synced(NO_STRIPE_PROVIDER)
        if self.stripe_customer_id:
            return sync_view(
                "succeeded",
                stripe_id=self.stripe_customer_id,
                stripe_url=dashboard_url("customer", self.stripe_customer_id, self.stripe_livemode),
                synced_at=self.updated_at,
            )
        if not self.error_details:
            return pending()
        failure = self.error_details[-1]  # Stripe's error, as the provider sync kept it
        return sync_view(
            "failed",
            error=SyncError(
                code=str(failure.details.get("error_code") or failure.error_code),
                message=str(failure.details.get("message") or ""),
            ),
        )

    def as_webhook_object(self) -> dict[str, object]:
        """Lago's CustomerObject, as carried by ``customer.*`` webhooks."""
        body = self.as_lago()
        for key in ("taxes", "applicable_invoice_custom_sections", "error_details"):
            body.pop(key)
        return body


class PaymentMethod(BaseModel):
    lago_id: str
    organization_id: str
    external_customer_id: str
    customer_lago_id: str
    is_default: bool
    payment_provider_code: str
    payment_provider_name: str
    provider_method_id: str
    provider_method_type: str = "card"
    details: dict[str, object] = Field(default_factory=dict)
    created_at: str

    def as_lago(self) -> dict[str, object]:
        """Lago's PaymentMethodObject."""
        return {
            "lago_id": self.lago_id,
            "is_default": self.is_default,
            "payment_provider_code": self.payment_provider_code,
            "payment_provider_name": self.payment_provider_name,
            "payment_provider_type": "stripe",
            "provider_method_id": self.provider_method_id,
            "created_at": self.created_at,
        }


OWN_KEY_PREFIX = "billow-"
"""Every idempotency key of Billow's writes to a customer's payment methods in Stripe starts
with this, so the events those writes cause (``request.idempotency_key``) are recognisable
as Billow's own echo. The keys Stripe's SDKs make up are bare UUIDs, which never start so."""


def is_own_request(idempotency_key: object) -> bool:
    return isinstance(idempotency_key, str) and idempotency_key.startswith(OWN_KEY_PREFIX)


def detach_key(method: PaymentMethod) -> str:
    """A payment method is detached once: Stripe never attaches a detached one again."""
    return f"{OWN_KEY_PREFIX}detach-{method.lago_id}"


class DefaultPaymentMethodState(BaseModel):
    """What orders the changes to a customer's default payment method.

    Billow changes the default on request and learns of other changes from Stripe's events,
    which arrive late, twice and out of order. Two times decide whether a Stripe fact may
    still move the default, both in whole Unix seconds, the unit of Stripe's ``created``:

    - ``chosen_at``: when the customer's latest explicit choice (``set_as_default``) began,
      read before Billow wrote it to Stripe. An event stamped in an earlier second
      happened before the choice and never overrides it.
    - ``default_seen_at``: the ``created`` of the newest Stripe event that set the default
      (a saved card or a ``customer.updated``). An event older than it is stale.

    ``version`` counts every change to the customer's payment methods. Each write expects
    the version it read, so two changes that race are decided again on fresh reads; it is
    also the counter in the idempotency key of Billow's writes to Stripe's default.

    Written with every change to the methods, the state also holds a copy of the default
    one (``default_method``): a charge finds the card to use by this item's key, without
    listing the customer's methods.
    """

    organization_id: str
    customer_lago_id: str
    version: int = 0
    chosen_method_id: str | None = None
    """The lago_id of the customer's latest explicit choice, while it is still the default."""
    chosen_at: int | None = None
    default_seen_at: int = 0
    default_method: PaymentMethod | None = None
    """The customer's default payment method as last written (None: it has none). Only
    meaningful when ``holds_default``."""
    holds_default: bool = False
    """False on a state stored before it kept ``default_method``: who reads it must list
    the methods to find the default (its next change writes the copy)."""

    def saved_card_yields(self, created: int) -> bool:
        """Whether a card saved at ``created`` must leave the current default alone.

        A same-second tie goes to the explicit choice: the card is listed but not made the
        default, and Billow writes nothing to Stripe for it, so Billow and Stripe both keep
        the choice. That is safe: nothing is lost (the customer can still choose the card),
        whereas the opposite rule could let a card saved just before the choice undo it.
        """
        chosen = self.chosen_at is not None and created <= self.chosen_at
        return chosen or created < self.default_seen_at

    def predates_default(self, created: int) -> bool:
        """Whether a ``customer.updated`` stamped ``created`` is certainly older than the
        default Billow holds. A same-second event is not decided here: the caller compares
        the default it names with Stripe's current one, which already holds Billow's write
        (made before the choice was recorded), so only a genuinely later change wins."""
        chosen = self.chosen_at is not None and created < self.chosen_at
        return chosen or created < self.default_seen_at

    def default_write_key(self, method_lago_id: str) -> str:
        """The idempotency key for making a method Stripe's default at this version: a
        retried request (nothing recorded since) reuses it, any later change gets a new one."""
        return f"{OWN_KEY_PREFIX}default-{self.customer_lago_id}-{self.version}-{method_lago_id}"
