"""Settings: the whole configuration, read from a file and the environment."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from ezlink.config.accounts import AccountsConfig, BillingConfig
from ezlink.config.base import Strict
from ezlink.config.defaults import ModelConfig, default_models
from ezlink.config.models import MODEL_KINDS
from ezlink.config.server import ServerConfig
from ezlink.config.upstreams import RoutedModelConfig, UpstreamConfig
from ezlink.errors import ConfigError


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
        local = {m.id for m in self.models if not isinstance(m, RoutedModelConfig)}
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
