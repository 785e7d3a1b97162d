"""Queries on the accounts tables; the only module that writes them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, String, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ezlink.accounts.keys import (
    ApiKey,
    KeyLimits,
    display_prefix,
    generate_secret,
    hash_secret,
    new_key_id,
    utcnow,
)
from ezlink.accounts.store.reports import usage_totals
from ezlink.accounts.store.tables import api_keys, usage_events

GroupBy = Literal["day", "key", "model", "team"]
# Fields `update_key` may change; the secret, id and counters never change.
UPDATABLE = frozenset(
    {
        "name",
        "owner",
        "expires_at",
        "disabled",
        "allowed_models",
        "rpm",
        "tpm",
        "quota_tokens",
        "team_id",
        "max_spend",
    }
)


@dataclass(frozen=True)
class TokenCounts:
    """The tokens of one request, as the model (or ezlink, when it had to) counted them."""

    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0
    # True when ezlink counted: the provider gave no usage, or the stream was cut.
    counted_by_ezlink: bool = False

    @property
    def total(self) -> int:
        return self.prompt + self.completion


@dataclass(frozen=True)
class Units:
    """What a request used that is not tokens, for usage and prices: images (by
    size and quality), seconds of audio in, characters of speech out."""

    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    audio_seconds: float = 0.0
    characters: int = 0

    @property
    def unit(self) -> str | None:
        """The usage row's `unit` column: which of the amounts this request has."""
        if self.images:
            return "image"
        if self.audio_seconds:
            return "audio_second"
        if self.characters:
            return "character"
        return None

    @property
    def quantity(self) -> float:
        return float(self.images or self.audio_seconds or self.characters)


@dataclass(frozen=True)
class UsageEvent:
    """One API request, as recorded."""

    created_at: datetime
    key_id: str | None
    model: str
    inputs: int
    prompt_tokens: int
    status: int
    latency_ms: float
    user: str | None = None
    request_id: str | None = None
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    counted_by_ezlink: bool = False
    # The API family: embeddings, chat, completions, ...
    family: str = "embeddings"
    stream: bool = False
    # Milliseconds to the first byte of a streamed answer (time to first token).
    first_byte_ms: float | None = None
    finish_reason: str | None = None
    # Units that are not tokens (images, audio seconds, characters), if any.
    unit: str | None = None
    quantity: float = 0.0
    # True when the tokens were already added to the key's used_tokens at
    # request time (keys with a quota), so the flush must not add them again.
    charged: bool = False
    # Credits: the paying team, and the charge in micro-units.
    team_id: str | None = None
    cost: int = 0
    # Unique in the table: writing the same event twice stores it once.
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def _fit(value: str | None, column: ColumnElement[Any]) -> str | None:
    """Cut a client-given string to its column: PostgreSQL refuses a longer one,
    and one refused row would fail its whole batch on every retry."""
    length = column.type.length if isinstance(column.type, String) else None
    return value if value is None or length is None else value[:length]


def _usage_row(item: UsageEvent) -> dict[str, Any]:
    columns = usage_events.c
    return {
        "event_id": item.event_id,
        "created_at": item.created_at,
        "key_id": item.key_id,
        "model": _fit(item.model, columns.model),
        "inputs": item.inputs,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
        "cached_tokens": item.cached_tokens,
        "reasoning_tokens": item.reasoning_tokens,
        "counted_by_ezlink": item.counted_by_ezlink,
        "family": item.family,
        "stream": item.stream,
        "first_byte_ms": item.first_byte_ms,
        "finish_reason": _fit(item.finish_reason, columns.finish_reason),
        "unit": item.unit,
        "quantity": item.quantity,
        "status": item.status,
        "latency_ms": item.latency_ms,
        "user": _fit(item.user, columns.user),
        "request_id": _fit(item.request_id, columns.request_id),
        "team_id": item.team_id,
        "cost": item.cost,
    }


def _key_from_row(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        owner=row["owner"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        disabled=bool(row["disabled"]),
        revoked_at=row["revoked_at"],
        allowed_models=tuple(json.loads(row["allowed_models"])),
        limits=KeyLimits(
            rpm=row["rpm"],
            tpm=row["tpm"],
            quota_tokens=row["quota_tokens"],
            used_tokens=int(row["used_tokens"]),
            team_id=row["team_id"],
            max_spend=row["max_spend"],
            spent=int(row["spent"]),
        ),
    )


def _column_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(changes)
    if "allowed_models" in values:
        values["allowed_models"] = json.dumps(sorted(set(values["allowed_models"] or ())))
    return values


async def _add_used_tokens(connection: AsyncConnection, key_id: str, tokens: int) -> None:
    # One UPDATE that adds in the database: concurrent writers never lose a charge.
    await connection.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(used_tokens=api_keys.c.used_tokens + tokens)
    )


class AccountsStore:
    """Keys and usage in one database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- keys ---------------------------------------------------------------

    async def create_key(
        self,
        name: str,
        *,
        owner: str | None = None,
        allowed_models: Sequence[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
        quota_tokens: int | None = None,
        expires_at: datetime | None = None,
        team_id: str | None = None,
        max_spend: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is not kept anywhere."""
        secret = generate_secret()
        values = _column_values(
            {
                "id": new_key_id(),
                "name": name,
                "owner": owner,
                "key_hash": hash_secret(secret),
                "prefix": display_prefix(secret),
                "created_at": utcnow(),
                "expires_at": expires_at,
                "disabled": False,
                "allowed_models": allowed_models,
                "rpm": rpm,
                "tpm": tpm,
                "quota_tokens": quota_tokens,
                "used_tokens": 0,
                "team_id": team_id,
                "max_spend": max_spend,
            }
        )
        async with self.engine.begin() as connection:
            await connection.execute(insert(api_keys).values(**values))
        key = await self.get_key(values["id"])
        assert key is not None
        return key, secret

    async def _one(self, *where: Any) -> ApiKey | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(api_keys).where(*where))).mappings().first()
        return None if row is None else _key_from_row(row)

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        return await self._one(api_keys.c.key_hash == key_hash)

    async def get_key(self, key_id: str) -> ApiKey | None:
        """By id, or by the display prefix when that names one key."""
        key = await self._one(api_keys.c.id == key_id)
        if key is not None:
            return key
        async with self.engine.connect() as connection:
            rows = (
                (await connection.execute(select(api_keys).where(api_keys.c.prefix == key_id)))
                .mappings()
                .all()
            )
        return _key_from_row(rows[0]) if len(rows) == 1 else None

    async def list_keys(self) -> list[ApiKey]:
        async with self.engine.connect() as connection:
            rows = (
                (await connection.execute(select(api_keys).order_by(api_keys.c.created_at)))
                .mappings()
                .all()
            )
        return [_key_from_row(row) for row in rows]

    async def any_keys(self) -> bool:
        async with self.engine.connect() as connection:
            found = await connection.execute(select(api_keys.c.id).limit(1))
            return found.first() is not None

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if changes:
            async with self.engine.begin() as connection:
                await connection.execute(
                    update(api_keys)
                    .where(api_keys.c.id == key_id)
                    .values(**_column_values(changes))
                )
        return await self._one(api_keys.c.id == key_id)

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return await self._one(api_keys.c.id == key_id)

    # -- usage --------------------------------------------------------------

    async def charge(self, key_id: str, tokens: int) -> None:
        """Add tokens to a key's used_tokens, atomically (safe across processes)."""
        async with self.engine.begin() as connection:
            await _add_used_tokens(connection, key_id, tokens)

    async def _insert_new_events(
        self, connection: AsyncConnection, events: Sequence[UsageEvent]
    ) -> set[str]:
        """Insert the events not stored yet; the ids of those inserted."""
        # ON CONFLICT DO NOTHING: PostgreSQL's, and SQLite's upsert syntax.
        dialect: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(usage_events)
            .on_conflict_do_nothing(index_elements=[usage_events.c.event_id])
            .returning(usage_events.c.event_id)
        )
        result = await connection.execute(statement, [_usage_row(item) for item in events])
        return set(result.scalars().all())

    async def write_usage(self, events: Sequence[UsageEvent]) -> None:
        """Insert events and charge the uncharged ones, all in one transaction.

        Idempotent: an event already stored (its event_id) is neither stored
        nor charged again. So a flush whose commit landed although the driver
        reported an error (the connection dropped after COMMIT) can be retried
        whole, and a failed one leaves nothing behind: an event is counted once.
        """
        if not events:
            return
        async with self.engine.begin() as connection:
            # The insert comes first: on SQLite the first write takes the lock,
            # and a transaction that starts by writing never has to upgrade a
            # read lock.
            inserted = await self._insert_new_events(connection, events)
            owed: dict[str, int] = {}
            for item in events:
                used = item.prompt_tokens + item.completion_tokens
                if item.event_id not in inserted or item.charged or not used:
                    continue
                if item.key_id is not None:
                    owed[item.key_id] = owed.get(item.key_id, 0) + used
            for key_id, tokens in sorted(owed.items()):
                await _add_used_tokens(connection, key_id, tokens)

    async def usage(
        self,
        *,
        key_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
        team_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Totals of the recorded requests (with their cost in micro-units),
        optionally per day, key, model or team."""
        async with self.engine.connect() as connection:
            return await usage_totals(
                connection,
                key_id=key_id,
                model=model,
                since=since,
                until=until,
                group_by=group_by,
                team_id=team_id,
            )
