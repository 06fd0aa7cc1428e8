"""Subscription use cases behind /api/v1/subscriptions, one module each: ``create``
(which starts through ``start``, or changes plan through ``upgrade`` or ``downgrade``,
holding an amount first through ``authorization``), ``update``, ``terminate``, ``finding``
(GET by external id) and ``listing``. ``requests`` holds Lago's request bodies and
``views`` what a subscription's Lago representation needs.

The names routes and other services use are gathered here."""

from billow.services.subscriptions.create import CreateResult, PlanChange, create
from billow.services.subscriptions.finding import get
from billow.services.subscriptions.listing import list_subscriptions
from billow.services.subscriptions.requests import CreateSubscription, SubscriptionUpdateInput
from billow.services.subscriptions.terminate import terminate_subscription
from billow.services.subscriptions.update import update
from billow.services.subscriptions.views import SubscriptionView, views

__all__ = [
    "CreateResult",
    "CreateSubscription",
    "PlanChange",
    "SubscriptionUpdateInput",
    "SubscriptionView",
    "create",
    "get",
    "list_subscriptions",
    "terminate_subscription",
    "update",
    "views",
]
