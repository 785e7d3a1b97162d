"""Who is calling: `Authorization: Bearer <key>` → a Principal.

Issued keys are looked up in the accounts store, then the master key is
tried. Accounts are always on: issued keys work as soon as one exists. A
server with neither a master key nor any issued key stays open (anonymous),
as the loopback default has always been; the first key issued closes it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from ezlink.accounts.keys import ApiKey, KeyLimits
from ezlink.accounts.service import Accounts
from ezlink.api.state import app_state, request_facts
from ezlink.errors import AuthenticationError, PermissionDeniedError


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    key_id: str | None = None
    # A short, non-secret prefix of the key, fit for logs.
    display: str = "anonymous"
    is_admin: bool = False
    # Public model names this caller may use; None means all.
    allowed_models: frozenset[str] | None = None
    # Rate limits and quota of an issued key; None: unlimited.
    limits: KeyLimits | None = None

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


ANONYMOUS = Principal()
MASTER = Principal(key_id="master", display="master", is_admin=True)

REFUSED = {
    "revoked": "This API key has been revoked.",
    "disabled": "This API key is disabled.",
    "expired": "This API key has expired.",
}


def missing_key_error() -> AuthenticationError:
    return AuthenticationError(
        "You didn't provide an API key. Provide it in the Authorization header "
        "(Authorization: Bearer YOUR_KEY)."
    )


def invalid_key_error(api_key: str) -> AuthenticationError:
    hint = f"{api_key[:3]}***{api_key[-2:]}" if len(api_key) > 8 else "***"
    return AuthenticationError(f"Incorrect API key provided: {hint}.")


def is_master_key(api_key: str, master_key: str | None) -> bool:
    return master_key is not None and hmac.compare_digest(
        api_key.encode("utf-8", "surrogateescape"), master_key.encode("utf-8")
    )


def principal_of(key: ApiKey) -> Principal:
    return Principal(
        key_id=key.id,
        display=key.prefix,
        allowed_models=frozenset(key.allowed_models) if key.allowed_models else None,
        limits=key.limits,
    )


class Authenticator:
    """Issued keys (the accounts store), then the master key."""

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


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def require_principal(request: Request) -> Principal:
    """FastAPI dependency for /v1 routes."""
    principal = await app_state(request).authenticator.authenticate(bearer_token(request))
    request_facts(request).principal = principal
    return principal


async def require_admin(request: Request) -> Principal:
    """FastAPI dependency for /admin routes: the master key only."""
    principal = await require_principal(request)
    if not principal.is_admin:
        raise PermissionDeniedError("This route needs the master key.")
    return principal
