"""The accounts tables (the migrations in migrations/versions create them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
EventId = BigInteger().with_variant(Integer(), "sqlite")
# A uuid4 in hex; the rows from before event ids have "legacy-<id>".
EVENT_ID_LENGTH = 32

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("owner", String(200)),
    # sha256 hex of the secret; the secret itself is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("revoked_at", DateTime(timezone=True)),
    # JSON list of public model names; empty list = every model.
    Column("allowed_models", Text, nullable=False, default="[]"),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("quota_tokens", BigInteger),
    # Tokens charged so far; only ever changed by `used_tokens = used_tokens + n`.
    Column("used_tokens", BigInteger, nullable=False, default=0),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("key_id", String(32), index=True),
    Column("model", String(200), nullable=False),
    Column("inputs", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("user", String(256)),
    Column("request_id", String(128)),
    # Made when the event is (uuid4 hex), unique: writing an event again (a
    # flush retried after a commit that landed) stores nothing new.
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False, unique=True, index=True),
    # Text generation (migration 0003): what the answer cost besides the prompt.
    Column("family", String(32), nullable=False, server_default="embeddings"),
    Column("completion_tokens", Integer, nullable=False, server_default="0"),
    Column("cached_tokens", Integer, nullable=False, server_default="0"),
    Column("reasoning_tokens", Integer, nullable=False, server_default="0"),
    # True when ezlink counted the tokens (no usage from the provider, or a cut stream).
    Column("counted_by_ezlink", Boolean, nullable=False, server_default=false()),
    Column("stream", Boolean, nullable=False, server_default=false()),
    Column("first_byte_ms", Float),
    Column("finish_reason", String(32)),
    # Units that are not tokens (migration 0004): image, audio_second, character.
    Column("unit", String(32)),
    Column("quantity", Float, nullable=False, server_default="0"),
)
