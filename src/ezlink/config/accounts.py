"""Accounts and billing settings: the database, limits' store, prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    Field,
)

from ezlink.config.base import Strict

# A price: a decimal amount of the billing currency (a string in the file,
# "0.15", so that no float ever rounds it); never negative.
Price = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)]


class PriceConfig(Strict):
    """What one request of a model costs, per unit it uses (see README "Credits").

    Token prices are per million tokens; `cached_input_per_1m` applies to the
    prompt tokens the provider served from its cache (default: the input price).
    """

    input_per_1m: Price | None = None
    cached_input_per_1m: Price | None = None
    output_per_1m: Price | None = None
    # One image: a number, or a table by size ("1024x1024") and optionally quality.
    per_image: Price | dict[str, Price | dict[str, Price]] | None = None
    per_audio_second: Price | None = None
    per_1k_chars: Price | None = None
    per_request: Price | None = None
    # By task action (e.g. {"generate": "0.10"}).
    per_task: dict[str, Price] | None = None


class BillingConfig(Strict):
    """Credits: teams pay for their keys' requests at the models' prices."""

    # ISO code of the one currency all prices and balances are in.
    currency: str = Field("USD", min_length=3, max_length=3)
    # Refuse to start when a model has no `price` (else such a model is free).
    require_price: bool = False
    # Seconds a hold lives: a crashed process's holds are released after this
    # (every process sweeps expired holds at start and every 5 s); longer
    # than any request may run (a stream: the upstreams' stream_timeout).
    hold_ttl_s: float = Field(900.0, gt=0)


class AccountsConfig(Strict):
    """Issued keys, limits and usage (see the README's "Accounts" section)."""

    # SQLAlchemy URL (sqlite:///..., postgresql://...); prefer EZLINK_DATABASE_URL.
    # None: a SQLite file in $EZLINK_DATA_DIR (default ~/.local/share/ezlink).
    database_url: str | None = None
    # Shared rate limits across replicas; None: limits per process.
    redis_url: str | None = None
    # Usage rows are written in batches off the request path, this often.
    usage_flush_interval_s: float = Field(0.5, gt=0)
    usage_batch_size: int = Field(500, ge=1)
    # Seconds a key read from the database serves this process's requests.
    # 0: read on every request, so a revoke or disable made anywhere holds
    # from the next request (costs a database round trip, about 2 ms on
    # SQLite). N: changes made elsewhere (the CLI, other replicas) are seen
    # within N s; this process's admin API applies its own at once. Keys with
    # a token quota are always read fresh, so the quota stays exact.
    key_cache_seconds: float = Field(0.0, ge=0)
