"""The composition root: builds adapters lazily, once per process, from the environment.

Nothing here runs at import time, so importing a handler costs no client construction,
and functions that never call Stripe never import the ``stripe`` package.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from billow.adapters.dynamodb import Store
from billow.adapters.secrets import SecretStore
from billow.domain.integrations import StripeConnection
from billow.settings import Settings

if TYPE_CHECKING:
    from billow.ports import PaymentProvider


class Dependencies:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.table_name)
        self.secrets = SecretStore(settings.secrets_prefix)
        self._gateways: dict[str, PaymentProvider] = {}

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
