"""Stripe keys in Secrets Manager, one secret per organization and connection.

Reads go through Powertools' SecretsProvider cache; the connection item carries the
secret's version, and a version we have not read yet forces a fresh fetch, so a key
rotated in one Lambda is never served stale by another.
"""

from __future__ import annotations

import functools

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from billow.domain.integrations import StripeSecret

CACHE_S = 300


class SecretStore:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._versions_read: dict[str, str] = {}

    @functools.cached_property
    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client("secretsmanager")

    @functools.cached_property
    def provider(self) -> SecretsProvider:
        return SecretsProvider(boto3_client=self.client)

    def name_for(self, organization_id: str, code: str) -> str:
        return f"{self.prefix}/{organization_id}/stripe/{code}"

    def put(self, name: str, secret: StripeSecret) -> str:
        """Store (or rotate) the secret and return its new version id."""
        value = secret.model_dump_json()
        try:
            result = self.client.put_secret_value(SecretId=name, SecretString=value)
        except self.client.exceptions.ResourceNotFoundException:
            result = self.client.create_secret(Name=name, SecretString=value)
        return str(result["VersionId"])

    def get(self, name: str, version: str) -> StripeSecret:
        stale = self._versions_read.get(name) != version
        raw = self.provider.get(name, max_age=CACHE_S, force_fetch=stale)
        self._versions_read[name] = version
        return StripeSecret.model_validate_json(str(raw))

    def delete(self, name: str) -> None:
        try:
            self.client.delete_secret(SecretId=name, RecoveryWindowInDays=7)
        except self.client.exceptions.ResourceNotFoundException:
            return
