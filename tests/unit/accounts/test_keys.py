"""API key secrets, their hashes and a key's state."""

from __future__ import annotations

import base64
from datetime import timedelta

from ezlink.accounts.keys import (
    ApiKey,
    display_prefix,
    generate_secret,
    hash_secret,
    utcnow,
)


def test_secret_is_sk_prefixed_with_at_least_32_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("sk-")
    body = secret[3:]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(raw) >= 32


def test_secrets_never_repeat() -> None:
    assert len({generate_secret() for _ in range(1000)}) == 1000


def test_hash_is_sha256_hex_and_does_not_contain_the_secret() -> None:
    secret = generate_secret()
    digest = hash_secret(secret)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert secret[3:] not in digest
    assert hash_secret(secret) == digest


def test_display_prefix_is_short_and_reveals_only_the_start() -> None:
    secret = generate_secret()
    prefix = display_prefix(secret)
    assert secret.startswith(prefix)
    assert len(prefix) == 11


def key(**fields: object) -> ApiKey:
    return ApiKey(id="key_1", name="n", prefix="sk-abcdefgh", **fields)  # type: ignore[arg-type]


def test_a_key_is_active_until_disabled_revoked_or_expired() -> None:
    now = utcnow()
    assert key().state() == "active"
    assert key(expires_at=now + timedelta(days=1)).state() == "active"
    assert key(expires_at=now - timedelta(seconds=1)).state() == "expired"
    assert key(disabled=True).state() == "disabled"
    assert key(disabled=True, revoked_at=now).state() == "revoked"


def test_public_view_has_no_secret_or_hash() -> None:
    public = key().to_public()
    assert "key" not in public and "key_hash" not in public
    assert public["prefix"] == "sk-abcdefgh"
