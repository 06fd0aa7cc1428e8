"""Lago's subscription request bodies, as the use cases take them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from billow.domain.clock import IsoDateTime
from billow.domain.identifiers import Identifier
from billow.domain.money import Currency, HoldableCents
from billow.domain.subscriptions import PaymentMethodChoice
from billow.services.plan_charges import UsageThresholdInputs


class AuthorizationInput(BaseModel):
    """What to hold on the card before subscribing: an amount Stripe can charge, in a
    currency Billow knows, or nothing is asked of Stripe at all."""

    model_config = ConfigDict(extra="forbid")

    amount_cents: HoldableCents
    amount_currency: Currency


Url = Annotated[HttpUrl, Field(max_length=1024)]


class CheckoutInput(BaseModel):
    """Subscribe through Stripe's hosted checkout (seed 004's options): the subscription
    waits, pending, until the customer completes the page."""

    model_config = ConfigDict(extra="forbid")

    success_url: Url
    cancel_url: Url
    allow_promotion_codes: bool = False
    collect_billing_address: bool = False
    collect_phone_number: bool = False
    tax_id_collection: bool = False


class PlanOverridesInput(BaseModel):
    """Lago's PlanOverridesObject, as far as Billow takes it: the subscription's own
    progressive billing thresholds. Any other override is refused (422) rather than
    ignored: the subscription would be billed otherwise than its client asked."""

    model_config = ConfigDict(extra="allow")

    usage_thresholds: UsageThresholdInputs | None = None

    def unsupported(self) -> list[str]:
        return sorted(name for name, value in (self.model_extra or {}).items() if value is not None)


class SubscriptionInput(BaseModel):
    """Lago's subscription input. Fields Billow does not support yet are refused, not ignored."""

    model_config = ConfigDict(extra="ignore")

    external_customer_id: str = Field(min_length=1, max_length=255)
    plan_code: str = Field(min_length=1, max_length=255)
    external_id: Identifier | None = None
    name: str | None = Field(default=None, max_length=255)
    billing_time: Literal["calendar", "anniversary"] = "calendar"
    subscription_at: IsoDateTime | None = None
    ending_at: IsoDateTime | None = None
    payment_method: PaymentMethodChoice | None = None
    plan_overrides: PlanOverridesInput | None = None
    checkout: CheckoutInput | None = None


class CreateSubscription(BaseModel):
    subscription: SubscriptionInput
    authorization: AuthorizationInput | None = None


class SubscriptionUpdateInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=255)
    ending_at: IsoDateTime | None = None
    subscription_at: IsoDateTime | None = None
    payment_method: PaymentMethodChoice | None = None
