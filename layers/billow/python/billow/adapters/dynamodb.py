"""The single DynamoDB table, and one repository per entity over it.

Every item of an organization lives in its partition ``ORG#{organization_id}``; nothing
an API key can reach is read from another partition. Objects are stored as a compressed
JSON document in ``data`` next to the key attributes, so money and nested objects
round-trip exactly (no floats, no Decimal surprises).

The Store is the table (``commit``, and the generic reads of ``ListRecords``) and builds
each repository on first use, importing its module then: a function loads only the
records it touches. Repositories read with ``get_…``/``list_…``/``count_…``, stage writes
into a caller's transaction with ``stage_…``, and write on their own otherwise (``save``,
``delete``, ``record``).

Access patterns, each a key lookup or a Query, never a Scan (``{org}`` is ``ORG#{id}``;
lists are keys-only index entries, newest first, with counters written in the same
transaction as the items they count: ``billow.adapters.listing``):

``organizations``
- by id: PK={org} SK=ORGANIZATION; by API key (auth): PK=API_KEY#{sha256(key)} SK=API_KEY
- all organizations (system sweeps): GSI1PK=ORGANIZATIONS

``connections``
- Stripe connection by code / all: PK={org} SK=INTEGRATION#stripe#{code} / begins_with

``customers``, ``payment_methods``
- customer by external id / all (sweeps): PK={org} SK=CUSTOMER#{external_id} / begins_with
- customer list: GSI3PK={org}#CUSTOMERS GSI3SK={created_at}#{sequential_id:012}; its
  count: PK={org} SK begins_with COUNTER#CUSTOMERS#SHARD#
- customer by Stripe customer id: GSI1PK={org}#STRIPE_CUSTOMER#{cus_id}
- a customer's payment methods / one by id: PK={org} SK begins_with
  PAYMENT_METHOD#{customer_lago_id}# / PAYMENT_METHOD#{customer_lago_id}#{lago_id}
- payment method by Stripe id: GSI1PK={org}#STRIPE_PAYMENT_METHOD#{pm_id}
- what orders a customer's default payment method, and a copy of that method (the card a
  charge uses, read by key): PK={org} SK=PAYMENT_DEFAULT#{customer_lago_id}

``webhook_endpoints``, ``deliveries``
- all endpoints (ten at most), in one versioned item: PK={org} SK=WEBHOOK_ENDPOINTS; made
  on first use from the one-item-per-endpoint keys of older organizations
  (PK={org} SK begins_with WEBHOOK_ENDPOINT#, strongly consistent), which stay unread
- what an outgoing event reached, each endpoint's outcome in one item (TTL 30 days):
  PK={org} SK=WEBHOOK_DELIVERY#{event}; a delivery reads it with the endpoints (and, once
  per process, the organization) in one BatchGetItem

``stripe_events``
- event (inbox, de-duplication, TTL 90 days): PK={org} SK=STRIPE_EVENT#{evt_id}
- not yet processed: GSI2PK={org}#STRIPE_EVENT_PENDING GSI2SK=received_at
- where the reconciliation's next look at an account starts:
  PK={org} SK=STRIPE_EVENTS_CURSOR#{code}

``taxes``, ``plans``, ``add_ons``, ``coupons``, ``applied_coupons``
- tax by code / all: PK={org} SK=TAX#{code} / begins_with
- plan by id (deleted ones too) / all: PK={org} SK=PLAN#{lago_id} / begins_with; live plan
  by code: PK={org} SK=PLAN_CODE#{code} → lago_id
- add-on by code / all: PK={org} SK=ADD_ON#{code} / begins_with
- coupon by id (deleted ones too) / all: PK={org} SK=COUPON#{lago_id} / begins_with; live
  coupon by code: PK={org} SK=COUPON_CODE#{code} → lago_id
- catalog lists: GSI3PK={org}#{PLANS|ADD_ONS|COUPONS|TAXES} GSI3SK={created_at}#{lago_id}
- a tax's users: PK={org} SK=COUNTER#{CUSTOMERS|PLANS|ADD_ONS}#TAX#{code}
- a customer's applied coupons / all: PK={org} SK begins_with
  APPLIED_COUPON#{customer_lago_id}# / APPLIED_COUPON#; lists by status, customer and
  coupon code: GSI3PK={org}#APPLIED_COUPONS#STATUS#{status} (GSI4: #CUSTOMER#{id}…,
  GSI5: #CODE#{code}…, GSI6: both)

``subscriptions``
- of an external id: PK={org} SK begins_with SUBSCRIPTION#{external_id}#; all (a plan's
  users): PK={org} SK begins_with SUBSCRIPTION#
- lists by status: GSI3PK={org}#SUBSCRIPTIONS#STATUS#{status}; a customer's: GSI4PK=…
  #CUSTOMER#{external_id}#STATUS#{status}; a plan's: GSI5PK=…#PLAN#{code}#STATUS#{status};
  both: GSI6PK=…#CUSTOMER#{external_id}#PLAN#{code}#STATUS#{status}
- counts by status: COUNTER#SUBSCRIPTIONS#SHARD#, and COUNTER#SUBSCRIPTIONS#{CUSTOMER#{id}
  | PLAN#{code} | CUSTOMER#{id}#PLAN#{code} | PLAN_ID#{lago_id} | STRIPE_BILLED#CUSTOMER#{id}}
- one start per generation of an external id: PK={org} SK=SUBSCRIPTION_START#{external_id}#{n}
- due for billing (system sweep, sparse, GSI2: ids only):
  GSI2PK=BILLING_DUE#{shard} GSI2SK <= {now}… (``{next_billing_at}#{org}#{lago_id}``)

``invoices``, ``dunning``, ``numbering``
- invoice by id: PK={org} SK=INVOICE#{lago_id}
- invoice lists, sort key ``{issuing_date}#{created_at}#{sequential_id:012}`` (issuing
  dates are key ranges): all: GSI3PK={org}#INVOICES; a customer's: GSI4PK=…#CUSTOMER#{id};
  by state: GSI5PK=…#STATE#{status}.{payment_status}; both: GSI6PK=…#CUSTOMER#{id}#STATE#…
- invoice counts: COUNTER#INVOICES#SHARD# (``all`` and one per state) and
  COUNTER#INVOICES#CUSTOMER#{external_id}
- a customer's invoices waiting for a payment method (sparse):
  GSI1PK={org}#AWAITING_PAYMENT_METHOD#{customer_lago_id}
- charge attempts in flight (system sweep, sparse, GSI2: ids only):
  GSI2PK=PAYMENT_IN_FLIGHT#{shard} GSI2SK <= {cutoff}… (``{requested_at}#{org}#{lago_id}``)
- payment retries of an invoice: PK={org} SK=DUNNING#{invoice_id}; retries due (system
  sweep, sparse): GSI1PK=DUNNING_DUE#{shard} GSI1SK <= {now}…
- invoices waiting for a number: PK={org} SK begins_with INVOICE_TO_NUMBER# (strongly
  consistent); of every organization (sweep, sparse, GSI2: ids only):
  GSI2PK=INVOICES_TO_NUMBER#{shard} GSI2SK <= {cutoff}…
- the number sequence and the lease of whoever numbers: PK={org} SK=INVOICE_SEQUENCE

``stripe_sync``, ``stripe_portal``
- a catalog object's mirror in Stripe: PK={org} SK=STRIPE_SYNC#{object_type}#{lago_id};
  those that failed (sparse, GSI2: ids only): GSI2PK={org}#STRIPE_SYNC_FAILED
  GSI2SK={object_type}#{lago_id}
- the Billing Portal configuration made in an account:
  PK={org} SK=STRIPE_PORTAL#{code}#{webhook_endpoint_id}#v{version}

``usage``
- metric by id (deleted ones too): PK={org} SK=METRIC#{lago_id}; live metric by code:
  PK={org} SK=METRIC_CODE#{code} → lago_id; list: GSI3PK={org}#METRICS
- how many plans charge for a metric: PK={org} SK=COUNTER#METRIC_USES#{metric_lago_id}
- raw event (TTL 400 days): PK={org}#EVENTS#{bucket}
  SK=EVENT#{len(transaction_id)}#{transaction_id}#{external_subscription_id}
- a charge's aggregate for one period (and filter): PK={org}
  SK=USAGE#{subscription_lago_id}#{period_start}#{charge_lago_id}#{filter_lago_id or -}
- what a recurring charge carries into the next period: PK={org}
  SK=USAGE_CARRY#{subscription_lago_id}#{charge_lago_id}#{filter or -}
- a value present for a unique count: PK={org}
  SK=USAGE_VALUE#{subscription}#{period_start or LIFETIME}#{charge}#{filter or -}#{sha256(value)}
- what progressive billing invoiced of a period: PK={org}
  SK=USAGE_PROGRESS#{subscription_lago_id}#{period_start}
- a stream chunk already folded (TTL 2 days): PK=USAGE_RECEIPT#{eventID} SK=USAGE_RECEIPT

The table's own
- outbox (stream → bus, TTL 2 days), the events of one transaction:
  PK={org} SK=OUTBOX#{first event_id}
- Powertools idempotency records: PK=IDEMPOTENCY#{function} SK={hash} (hashes, no tenant data)

The due, in-flight, waiting and receipt keys are the only cross-tenant reads; they serve
the scheduled runs and the stream, which hand each item back to a worker that reads it
again from its organization's partition.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from billow.adapters.listing import ListRecords

if TYPE_CHECKING:
    from billow.adapters.billing_records import DunningRecords, InvoiceRecords, SubscriptionRecords
    from billow.adapters.catalog_records import (
        AddOnRecords,
        AppliedCouponRecords,
        CouponRecords,
        PlanRecords,
        TaxRecords,
    )
    from billow.adapters.customer_records import CustomerRecords, PaymentMethodRecords
    from billow.adapters.invoice_numbering import NumberingRecords
    from billow.adapters.organization_records import ConnectionRecords, OrganizationRecords
    from billow.adapters.stripe_event_records import StripeEventRecords
    from billow.adapters.stripe_portal_records import StripePortalRecords
    from billow.adapters.stripe_sync_records import StripeSyncRecords
    from billow.adapters.usage_records import UsageRecords
    from billow.adapters.webhook_records import DeliveryRecords, WebhookEndpointRecords

__all__ = ["Store"]

# Each repository is imported when first used (PLC0415): importing the Store costs no
# domain model a function does not touch.
# ruff: noqa: PLC0415


class Store(ListRecords):
    """The table and its repositories. Every method takes the organization id (or an
    object that carries it) first: tenancy is explicit."""

    @cached_property
    def organizations(self) -> OrganizationRecords:
        from billow.adapters.organization_records import OrganizationRecords

        return OrganizationRecords(self)

    @cached_property
    def connections(self) -> ConnectionRecords:
        from billow.adapters.organization_records import ConnectionRecords

        return ConnectionRecords(self)

    @cached_property
    def customers(self) -> CustomerRecords:
        from billow.adapters.customer_records import CustomerRecords

        return CustomerRecords(self)

    @cached_property
    def payment_methods(self) -> PaymentMethodRecords:
        from billow.adapters.customer_records import PaymentMethodRecords

        return PaymentMethodRecords(self)

    @cached_property
    def webhook_endpoints(self) -> WebhookEndpointRecords:
        from billow.adapters.webhook_records import WebhookEndpointRecords

        return WebhookEndpointRecords(self)

    @cached_property
    def deliveries(self) -> DeliveryRecords:
        from billow.adapters.webhook_records import DeliveryRecords

        return DeliveryRecords(self)

    @cached_property
    def stripe_events(self) -> StripeEventRecords:
        from billow.adapters.stripe_event_records import StripeEventRecords

        return StripeEventRecords(self)

    @cached_property
    def taxes(self) -> TaxRecords:
        from billow.adapters.catalog_records import TaxRecords

        return TaxRecords(self)

    @cached_property
    def plans(self) -> PlanRecords:
        from billow.adapters.catalog_records import PlanRecords

        return PlanRecords(self)

    @cached_property
    def add_ons(self) -> AddOnRecords:
        from billow.adapters.catalog_records import AddOnRecords

        return AddOnRecords(self)

    @cached_property
    def coupons(self) -> CouponRecords:
        from billow.adapters.catalog_records import CouponRecords

        return CouponRecords(self)

    @cached_property
    def applied_coupons(self) -> AppliedCouponRecords:
        from billow.adapters.catalog_records import AppliedCouponRecords

        return AppliedCouponRecords(self)

    @cached_property
    def subscriptions(self) -> SubscriptionRecords:
        from billow.adapters.billing_records import SubscriptionRecords

        return SubscriptionRecords(self)

    @cached_property
    def invoices(self) -> InvoiceRecords:
        from billow.adapters.billing_records import InvoiceRecords

        return InvoiceRecords(self)

    @cached_property
    def dunning(self) -> DunningRecords:
        from billow.adapters.billing_records import DunningRecords

        return DunningRecords(self)

    @cached_property
    def numbering(self) -> NumberingRecords:
        from billow.adapters.invoice_numbering import NumberingRecords

        return NumberingRecords(self)

    @cached_property
    def stripe_sync(self) -> StripeSyncRecords:
        from billow.adapters.stripe_sync_records import StripeSyncRecords

        return StripeSyncRecords(self)

    @cached_property
    def stripe_portal(self) -> StripePortalRecords:
        from billow.adapters.stripe_portal_records import StripePortalRecords

        return StripePortalRecords(self)

    @cached_property
    def usage(self) -> UsageRecords:
        from billow.adapters.usage_records import UsageRecords

        return UsageRecords(self)
