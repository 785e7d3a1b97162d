"""The default model, loaded in-process the way `ezlink serve` loads it."""

from __future__ import annotations

from ezlink.backends.base import EmbeddingBackend
from ezlink.config import LocalModelConfig, load_settings
from ezlink.engine.local_model import LocalModel, load_backend


def default_model() -> tuple[LocalModel, EmbeddingBackend]:
    """The first configured model (the default config: all-MiniLM-L6-v2) and its backend."""
    settings = load_settings()
    config = settings.models[0]
    assert isinstance(config, LocalModelConfig)
    model = LocalModel(config, settings.server.limits)
    return model, load_backend(model.config, model.files)
