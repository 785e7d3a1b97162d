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
    # Credits (migration 0005): the team that pays, the key's own cap in
    # micro-units, what it spent, and what its requests in flight hold.
    Column("team_id", String(32), index=True),
    Column("max_spend", BigInteger),
    Column("spent", BigInteger, nullable=False, server_default="0"),
    Column("held_spend", BigInteger, nullable=False, server_default="0"),
    # Tokens reserved by requests in flight against `quota_tokens`.
    Column("held_tokens", BigInteger, nullable=False, server_default="0"),
)

# Money is integer micro-units of the one currency (1 USD = 1_000_000).
teams = Table(
    "teams",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The sum of the team's ledger rows (`ezlink ledger verify` checks it).
    Column("balance", BigInteger, nullable=False, server_default="0"),
    # The sum of the team's live holds: available = balance - held.
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("daily_budget", BigInteger),
    Column("monthly_budget", BigInteger),
    # Spend of the current UTC day ("2026-11-29") and month ("2026-11"): a
    # charge in a new period starts the counter again.
    Column("spend_day", String(10)),
    Column("day_spent", BigInteger, nullable=False, server_default="0"),
    Column("spend_month", String(7)),
    Column("month_spent", BigInteger, nullable=False, server_default="0"),
)

# What requests in flight hold: money of a team (and a key's cap) and tokens
# of a key's quota. Deleted when the request settles, or by the sweeper once
# expired (a crashed process's holds).
holds = Table(
    "holds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("team_id", String(32)),
    Column("amount", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# Every movement of a team's balance, append-only: topup, redeem, charge,
# refund, adjustment (signed amounts), and release (amount 0, a swept hold).
ledger = Table(
    "ledger",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("team_id", String(32), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("key_id", String(32)),
    Column("hold_id", String(32)),
    Column("model", String(200)),
    Column("note", String(500)),
)

# Redemption codes: only the SHA-256 of a code is stored; redeemed once.
redemption_codes = Table(
    "redemption_codes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("value", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("redeemed_at", DateTime(timezone=True)),
    Column("team_id", String(32)),
    Column("key_id", String(32)),
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
    # Credits (migration 0005): the paying team and the charge in micro-units.
    Column("team_id", String(32), index=True),
    Column("cost", BigInteger, nullable=False, server_default="0"),
)
