"""Lago's customer objects as served: customers, their payment methods, checkout URLs."""

from __future__ import annotations

from typing import Any, Literal

from billow.api.responses.catalog import TaxObject
from billow.api.responses.common import (
    LagoObject,
    NoItems,
    PaginationMeta,
    StripeSyncObject,
    Timestamp,
)
from billow.domain.customers import PaymentProvider


class CustomerBillingConfiguration(LagoObject):
    invoice_grace_period: int
    subscription_invoice_issuing_date_anchor: str | None
    subscription_invoice_issuing_date_adjustment: str | None
    payment_provider: PaymentProvider | None
    payment_provider_code: str | None
    provider_customer_id: str | None
    sync: bool
    sync_with_provider: bool
    document_locale: str
    provider_payment_methods: list[str] | None


class ShippingAddress(LagoObject):
    address_line1: str | None
    address_line2: str | None
    city: str | None
    country: str | None
    state: str | None
    zipcode: str | None


class CustomerMetadataObject(LagoObject):
    lago_id: str
    key: str
    value: str
    display_in_invoice: bool
    created_at: Timestamp


class CustomerErrorDetail(LagoObject):
    """A background failure kept on the customer, e.g. Stripe refusing to create it."""

    lago_id: str
    error_code: str
    details: dict[str, Any]


class CustomerObject(LagoObject):
    """A customer as the /customers routes serve it and as invoices embed it."""

    lago_id: str
    external_id: str
    sequential_id: int
    slug: str
    billing_entity_code: str
    address_line1: str | None
    address_line2: str | None
    city: str | None
    country: str | None
    currency: str | None
    email: str | None
    legal_name: str | None
    legal_number: str | None
    logo_url: str | None
    name: str | None
    firstname: str | None
    lastname: str | None
    account_type: str
    customer_type: str | None
    phone: str | None
    state: str | None
    tax_identification_number: str | None
    timezone: str | None
    url: str | None
    zipcode: str | None
    net_payment_term: int | None
    finalize_zero_amount_invoice: str
    skip_invoice_custom_sections: bool
    billing_configuration: CustomerBillingConfiguration
    shipping_address: ShippingAddress
    metadata: list[CustomerMetadataObject]
    created_at: Timestamp
    updated_at: Timestamp
    applicable_timezone: str
    integration_customers: NoItems
    taxes: list[TaxObject]
    applicable_invoice_custom_sections: NoItems
    error_details: list[CustomerErrorDetail]
    stripe_sync: StripeSyncObject
    """Billow's addition: whether the customer exists in Stripe (``stripe_id``)."""


class CheckoutUrlObject(LagoObject):
    """A fresh Stripe Checkout page where the customer saves a payment method."""

    lago_customer_id: str
    external_customer_id: str
    payment_provider: Literal["stripe"]
    payment_provider_code: str
    checkout_url: str


class PaymentMethodObject(LagoObject):
    lago_id: str
    is_default: bool
    payment_provider_code: str
    payment_provider_name: str
    payment_provider_type: Literal["stripe"]
    provider_method_id: str
    created_at: Timestamp


class CustomerResponse(LagoObject):
    customer: CustomerObject


class CustomersPage(LagoObject):
    customers: list[CustomerObject]
    meta: PaginationMeta


class CheckoutUrlResponse(LagoObject):
    customer: CheckoutUrlObject


class PortalUrlObject(LagoObject):
    portal_url: str
    """A fresh Stripe Billing Portal session for the customer (it expires within minutes)."""


class PortalUrlResponse(LagoObject):
    customer: PortalUrlObject


class PaymentMethodResponse(LagoObject):
    payment_method: PaymentMethodObject


class PaymentMethodsPage(LagoObject):
    payment_methods: list[PaymentMethodObject]
    meta: PaginationMeta
