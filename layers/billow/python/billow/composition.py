"""The composition root: builds adapters lazily, once per process, from the environment.

Nothing here runs at import time, so importing a handler costs no client construction,
and functions that never call Stripe never import the ``stripe`` package.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from billow.adapters.dynamodb import Store
from billow.adapters.eventbridge import EventBus
from billow.adapters.notifications import Notifications
from billow.adapters.secrets import SecretStore
from billow.adapters.sqs import Queues
from billow.domain.integrations import StripeConnection
from billow.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

    from billow.ports import PaymentProvider


class Dependencies:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.table_name)
        self.secrets = SecretStore(settings.secrets_prefix)
        self.bus = EventBus(settings.event_bus_name)
        self.queues = Queues(settings.queue_urls)
        self.notifications = Notifications(settings.topic_arns)
        self._gateways: dict[str, PaymentProvider] = {}
        self._idempotency: dict[str, BasePersistenceLayer] = {}

    def idempotency(self, function: str) -> BasePersistenceLayer:
        """Powertools idempotency records for ``function``, in the table (hashes only)."""
        if function not in self._idempotency:
            from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
                DynamoDBPersistenceLayer,
            )

            self._idempotency[function] = DynamoDBPersistenceLayer(
                table_name=self.settings.table_name,
                key_attr="PK",
                sort_key_attr="SK",
                static_pk_value=f"IDEMPOTENCY#{function}",
                expiry_attr="expires_at",
            )
        return self._idempotency[function]

    def stripe_with_key(self, secret_key: str) -> PaymentProvider:
        if secret_key not in self._gateways:
            # Imported here: functions that never call Stripe never load the SDK.
            from billow.adapters.stripe_gateway import StripeGateway  # noqa: PLC0415

            self._gateways[secret_key] = StripeGateway(secret_key, self.settings.stripe_api_base)
        return self._gateways[secret_key]

    def stripe_for(self, connection: StripeConnection) -> PaymentProvider:
        secret = self.secrets.get(connection.secret_name, connection.secret_version)
        return self.stripe_with_key(secret.secret_key)


@functools.cache
def dependencies() -> Dependencies:
    return Dependencies(Settings.from_env())
