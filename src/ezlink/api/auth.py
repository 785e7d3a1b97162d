"""Who is calling: `Authorization: Bearer <key>` → a Principal.

The authenticator is an interface; the accounts store (issued keys with
limits, then the master key) stands behind it: `api.key_auth`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from ezlink.accounts.keys import KeyLimits
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


class Authenticator(Protocol):
    async def authenticate(self, api_key: str | None) -> Principal: ...


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
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.authenticate(bearer_token(request))
    request.state.principal = principal
    return principal


async def require_admin(request: Request) -> Principal:
    """FastAPI dependency for /admin routes: the master key only."""
    principal = await require_principal(request)
    if not principal.is_admin:
        raise PermissionDeniedError("This route needs the master key.")
    return principal
