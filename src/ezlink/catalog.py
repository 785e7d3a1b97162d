"""The served models, built from the settings: local models, then the routed
models that may send requests to them or to upstreams."""

from __future__ import annotations

from ezlink.config import (
    GgufModelConfig,
    LocalModelConfig,
    MediaModelConfig,
    ModerationModelConfig,
    PiperModelConfig,
    RoutedModelConfig,
    Settings,
)
from ezlink.engine.local_model import LocalModel
from ezlink.engine.types import ServedModel
from ezlink.errors import ConfigError
from ezlink.upstreams.endpoint import build_endpoints
from ezlink.upstreams.routing import RoutedModel


def build_gguf_model(config: GgufModelConfig) -> ServedModel:
    """A llama.cpp model; ConfigError naming why when llama.cpp cannot be imported."""
    try:
        # Imported here: llama.cpp is only needed where a GGUF model is served.
        from ezlink.engine.local_generator import LocalGenerator
    except ImportError as exc:
        raise ConfigError(
            f"model `{config.id}`: llama-cpp-python cannot be imported ({exc}); "
            "reinstall with `make serve` (it builds llama.cpp from source)"
        ) from exc
    return LocalGenerator(config)


def build_media_model(config: MediaModelConfig) -> ServedModel:
    # Imported here: the audio runtimes are only needed where such a model is served.
    from ezlink.engine.audio_models import PiperModel, ProfanityModel, WhisperModel

    if isinstance(config, PiperModelConfig):
        return PiperModel(config)
    if isinstance(config, ModerationModelConfig):
        return ProfanityModel(config)
    return WhisperModel(config)


def build_local_model(
    config: LocalModelConfig | GgufModelConfig | MediaModelConfig, settings: Settings
) -> ServedModel:
    """A model that runs in this process, of any kind."""
    if isinstance(config, LocalModelConfig):
        return LocalModel(config, settings.server.limits)
    if isinstance(config, GgufModelConfig):
        return build_gguf_model(config)
    return build_media_model(config)


def build_models(settings: Settings) -> list[ServedModel]:
    """One served model per configured model, in config order: the local ones
    first, so that routed models can route to them (`local: ID`)."""
    local = {
        config.id: build_local_model(config, settings)
        for config in settings.models
        if not isinstance(config, RoutedModelConfig)
    }
    endpoints = build_endpoints(settings.upstreams)
    return [
        RoutedModel(config, endpoints, local, limits=settings.server.limits)
        if isinstance(config, RoutedModelConfig)
        else local[config.id]
        for config in settings.models
    ]


def models_needed_by(model: ServedModel) -> list[ServedModel]:
    """The model, then the local models it routes to: a server's registry starts
    those for every model, but a one-off command starts only what one model needs."""
    needed = [model]
    if isinstance(model, RoutedModel):
        needed += [local for local in dict.fromkeys(model.local_models) if local is not model]
    return needed
