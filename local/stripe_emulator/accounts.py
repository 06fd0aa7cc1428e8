"""Stripe accounts and the secret keys that open them.

The account, not the key, owns what a request creates: objects, events, webhook
endpoints, idempotency records, request counts and faults. An account comes into being
the first time one of its keys is used (any well-formed test key, so a test makes an
account by making up a key) and keeps its ``acct_`` id for life. Rolling a key gives
the same account a new key and expires the old one, as rolling a key in Stripe's
dashboard does; that is how a test mends a revoked key without losing the account.
"""

from __future__ import annotations

import secrets

from aiohttp import web
from localstripe.resources import random_id


class Accounts:
    def __init__(self) -> None:
        self._account_of: dict[str, str] = {}
        self._expired: set[str] = set()

    def account_of(self, key: str) -> str:
        """The account ``key`` opens, new if the key was never seen."""
        account = self._account_of.get(key)
        if account is None:
            account = self._account_of[key] = "acct_" + random_id(16)
        return account

    def keys_of(self, account: str) -> list[str]:
        return [key for key, owner in self._account_of.items() if owner == account]

    def is_expired(self, key: str) -> bool:
        return key in self._expired

    def expire(self, key: str) -> None:
        """Stripe refuses ``key`` from now on; its account and other keys live on."""
        self.account_of(key)
        self._expired.add(key)

    def roll(self, key: str) -> str:
        """A new key of the same kind (secret or restricted) for ``key``'s account;
        ``key`` expires. An expired key can be rolled too: it is how one gets back in."""
        account = self.account_of(key)
        new_key = key[: len("sk_test_")] + secrets.token_hex(24)
        self._account_of[new_key] = account
        self._expired.add(key)
        return new_key


ACCOUNTS = web.AppKey("accounts", Accounts)
