"""The authenticator behind issued keys: the accounts store, then the master key.

Accounts are always on: issued keys work as soon as one exists. A server with
neither a master key nor any issued key stays open (anonymous), as the
loopback default has always been; the first key issued closes it.
"""

from __future__ import annotations

from ezlink.accounts.keys import ApiKey
from ezlink.accounts.service import Accounts
from ezlink.api.auth import (
    ANONYMOUS,
    MASTER,
    Principal,
    invalid_key_error,
    is_master_key,
    missing_key_error,
)
from ezlink.errors import AuthenticationError

REFUSED = {
    "revoked": "This API key has been revoked.",
    "disabled": "This API key is disabled.",
    "expired": "This API key has expired.",
}


def principal_of(key: ApiKey) -> Principal:
    return Principal(
        key_id=key.id,
        display=key.prefix,
        allowed_models=frozenset(key.allowed_models) if key.allowed_models else None,
        limits=key.limits,
    )


class AccountsAuthenticator:
    def __init__(self, master_key: str | None, accounts: Accounts) -> None:
        self.master_key = master_key
        self.accounts = accounts

    async def _is_open(self) -> bool:
        return self.master_key is None and not await self.accounts.any_keys()

    async def authenticate(self, api_key: str | None) -> Principal:
        if not api_key:
            if await self._is_open():
                return ANONYMOUS
            raise missing_key_error()
        if is_master_key(api_key, self.master_key):
            return MASTER
        key = await self.accounts.find_key(api_key)
        if key is None:
            if await self._is_open():
                return ANONYMOUS
            raise invalid_key_error(api_key)
        state = key.state()
        if state != "active":
            raise AuthenticationError(REFUSED[state])
        return principal_of(key)
