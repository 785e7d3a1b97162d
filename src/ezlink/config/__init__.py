"""Settings: the one source of defaults.

A config file (YAML or TOML) is validated by pydantic; unknown fields are
errors, so a typo names itself. A few settings also come from the
environment (``EZLINK_*``), which wins over the file, so that secrets need
never be written into it.

One module per part of the file: ``server`` (the process and the edge),
``accounts`` (database, prices, billing), ``models`` (what runs here),
``upstreams`` (providers and routed models), ``defaults`` (what `ezlink
serve` runs with no config) and ``settings`` (the whole, and loading it).
"""

from ezlink.config.accounts import AccountsConfig, BillingConfig, Price, PriceConfig
from ezlink.config.base import (
    ANTHROPIC_VERSION,
    OPENAI_MAX_INPUT_TOKENS,
    OPENAI_MAX_INPUTS,
    OPENAI_MAX_REQUEST_TOKENS,
    PublicModel,
    Strict,
)
from ezlink.config.defaults import (
    DEFAULT_CHAT_MODEL_ID,
    DEFAULT_CHAT_PACKAGE,
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_PACKAGE,
    DEFAULT_MODERATION_MODEL_ID,
    DEFAULT_SPEECH_MODEL_ID,
    DEFAULT_TRANSCRIPTION_MODEL_ID,
    AnyModelConfig,
    ModelConfig,
    default_media_models,
    default_models,
)
from ezlink.config.models import (
    MODEL_KINDS,
    BatchingConfig,
    GgufModelConfig,
    LocalModelConfig,
    MediaModelConfig,
    ModerationModelConfig,
    PiperModelConfig,
    WhisperModelConfig,
)
from ezlink.config.server import RequestLimitsConfig, ServerConfig
from ezlink.config.settings import Settings, format_validation_error, load_settings
from ezlink.config.upstreams import (
    BreakerConfig,
    RetryConfig,
    RouteConfig,
    RoutedModelConfig,
    UpstreamConfig,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_CHAT_MODEL_ID",
    "DEFAULT_CHAT_PACKAGE",
    "DEFAULT_MODEL_ID",
    "DEFAULT_MODEL_PACKAGE",
    "DEFAULT_MODERATION_MODEL_ID",
    "DEFAULT_SPEECH_MODEL_ID",
    "DEFAULT_TRANSCRIPTION_MODEL_ID",
    "MODEL_KINDS",
    "OPENAI_MAX_INPUTS",
    "OPENAI_MAX_INPUT_TOKENS",
    "OPENAI_MAX_REQUEST_TOKENS",
    "AccountsConfig",
    "AnyModelConfig",
    "BatchingConfig",
    "BillingConfig",
    "BreakerConfig",
    "GgufModelConfig",
    "LocalModelConfig",
    "MediaModelConfig",
    "ModelConfig",
    "ModerationModelConfig",
    "PiperModelConfig",
    "Price",
    "PriceConfig",
    "PublicModel",
    "RequestLimitsConfig",
    "RetryConfig",
    "RouteConfig",
    "RoutedModelConfig",
    "ServerConfig",
    "Settings",
    "Strict",
    "UpstreamConfig",
    "WhisperModelConfig",
    "default_media_models",
    "default_models",
    "format_validation_error",
    "load_settings",
]
