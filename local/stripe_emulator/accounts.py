"""Stripe accounts, the secret keys that open them, and the walls between them.

The account, not the key, owns what a request creates: objects, events, webhook
endpoints, idempotency records, request counts and faults. An account comes into being
the first time one of its keys is used (any well-formed test key, so a test makes an
account by making up a key) and keeps its ``acct_`` id for life. Rolling a key gives
the same account a new key and expires the old one, as rolling a key in Stripe's
dashboard does; that is how a test mends a revoked key without losing the account.

In Stripe an account sees nothing of another: another account's customer is "No such
customer", its lists hold only its own objects, and ids it chooses (a coupon's, a
plan's) are its own. ``AccountStore`` gives localstripe's single store exactly that
shape, one partition per account, so no lookup, listing or id check inside localstripe
or the emulator can reach across.
"""

from __future__ import annotations

import secrets
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any

from aiohttp import web
from localstripe import resources
from localstripe.resources import Store, random_id

from .context import current


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


class AccountStore(Store):
    """localstripe's store split by account: every dict operation localstripe and the
    emulator use reads or writes the partition of the account the current request acts
    for (``context.current``). Only ``of`` and ``owner`` look at a given partition, for
    the few callers that must: webhook delivery and the keyless hosted checkout page.
    """

    _partitions: dict[str | None, dict[str, Any]]

    def _own(self) -> dict[str, Any]:
        return self._partitions.setdefault(current().account, {})

    def get(self, key: str, default: Any = None) -> Any:
        return self._own().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._own()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._own()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._own()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._own()

    def __iter__(self) -> Iterator[str]:
        return iter(self._own())

    def __len__(self) -> int:
        return len(self._own())

    def keys(self) -> KeysView[str]:
        return self._own().keys()

    def values(self) -> ValuesView[Any]:
        return self._own().values()

    def items(self) -> ItemsView[str, Any]:
        return self._own().items()

    def clear(self) -> None:
        """Forget every account's objects (localstripe's ``DELETE /_config/data``)."""
        self._partitions.clear()

    def of(self, account: str | None) -> dict[str, Any]:
        """``account``'s partition, whoever is asking."""
        return self._partitions.get(account, {})

    def owner(self, key: str) -> str | None:
        """The account holding ``key`` (``"checkout.session:cs_..."``), if any."""
        return next((account for account, held in self._partitions.items() if key in held), None)


def partition_store() -> None:
    """Turn localstripe's store into an ``AccountStore`` in place, so every module that
    imported it sees the partitions. Done before any object exists."""
    store = resources.store
    if not isinstance(store, AccountStore):
        assert not dict.__len__(store), "the store must be partitioned before it is used"
        store.__class__ = AccountStore
        store._partitions = {}
