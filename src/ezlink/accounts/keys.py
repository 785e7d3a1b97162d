"""API key secrets and the key record: pure data, no database.

A secret is ``sk-`` + 32 random bytes (urlsafe base64), shown once. Only its
SHA-256 is stored: with 256 bits of entropy there is nothing to brute-force,
so a slow password hash (bcrypt, argon2) would only cost every request time
without adding safety, and a plain digest can be looked up by index.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ezlink.accounts.money import format_money

KEY_PREFIX = "sk-"
SECRET_BYTES = 32
# Characters of the secret kept for display ("sk-AbCd1234"); 8 urlsafe
# characters are 48 bits, harmless to show and enough to tell keys apart.
DISPLAY_CHARS = 8


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[: len(KEY_PREFIX) + DISPLAY_CHARS]


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class KeyLimits:
    """What the rate limiter and the quota check need of a key."""

    rpm: int | None = None
    tpm: int | None = None
    quota_tokens: int | None = None
    used_tokens: int = 0
    # Credits: the team that pays for the key's requests (None: unbilled), the
    # key's own spending cap and what it spent, in micro-units.
    team_id: str | None = None
    max_spend: int | None = None
    spent: int = 0

    @property
    def reserves(self) -> bool:
        """Whether admission reserves in the database (a team or a token quota)."""
        return self.team_id is not None or self.quota_tokens is not None

    @property
    def quota_left(self) -> int | None:
        return None if self.quota_tokens is None else self.quota_tokens - self.used_tokens


@dataclass(frozen=True)
class ApiKey:
    """An issued key as stored (never the secret)."""

    id: str
    name: str
    prefix: str
    owner: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    expires_at: datetime | None = None
    disabled: bool = False
    revoked_at: datetime | None = None
    allowed_models: tuple[str, ...] = ()
    limits: KeyLimits = KeyLimits()

    def state(self, now: datetime | None = None) -> str:
        """active, disabled, revoked or expired."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and as_utc(self.expires_at) <= now:
            return "expired"
        return "active"

    def to_public(self) -> dict[str, object]:
        """The admin API's and the CLI's view of a key."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "owner": self.owner,
            "prefix": self.prefix,
            "state": self.state(),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "allowed_models": list(self.allowed_models),
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "quota_tokens": self.limits.quota_tokens,
            "used_tokens": self.limits.used_tokens,
            "team_id": self.limits.team_id,
            "max_spend": _money(self.limits.max_spend),
            "spent": _money(self.limits.spent),
        }


def _money(micros: int | None) -> str | None:
    return None if micros is None else format_money(micros)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()
