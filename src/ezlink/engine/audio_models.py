"""The local audio and moderation engines as served models: a card each.

* ``WhisperModel``: transcription and translation. Translation asks Whisper
  for English text, which is what OpenAI's /v1/audio/translations answers;
  with the default English-only tiny.en weights that is a transcription of
  English speech, and speech in another language is not translated (it
  comes out as poor English). The card says so (``details``).
* ``PiperModel``: speech; every OpenAI voice name speaks with the one local
  voice (``engine.local_audio``).
* ``ProfanityModel``: moderation; its score speaks for ``harassment`` only
  (``engine.audio_types``), and images are not judged.

``audio_seconds`` measures an upload's length by decoding it, for usage of
relayed transcriptions: the duration ezlink heard, never the client's word.
"""

from __future__ import annotations

import asyncio

from ezlink.config import ModerationModelConfig, PiperModelConfig, WhisperModelConfig
from ezlink.engine.audio_types import (
    PROFANITY_CATEGORIES,
    ModerationResult,
    TranscriptionRequest,
    TranscriptionResult,
)
from ezlink.engine.local_audio import (
    LOCAL_VOICE,
    OPENAI_VOICES,
    LocalModerator,
    LocalSpeaker,
    LocalTranscriber,
)
from ezlink.engine.media_types import ModerationRequest
from ezlink.engine.types import MODERATION, SPEECH, TRANSCRIPTION, TRANSLATION, card_of
from ezlink.errors import InvalidRequestError


class WhisperModel(LocalTranscriber):
    """Whisper under a public name (a Transcriber)."""

    def __init__(self, config: WhisperModelConfig) -> None:
        super().__init__(
            config.path,
            cpu_threads=config.cpu_threads,
            beam_size=config.beam_size,
            vad_filter=config.vad_filter,
            max_seconds=config.max_seconds,
            concurrency=config.concurrency,
            max_waiting=config.max_waiting,
        )
        self.card = card_of(
            config,
            frozenset({TRANSCRIPTION, TRANSLATION}),
            details={"translation": "English speech to English text"},
        )

    async def translate(self, request: TranscriptionRequest) -> TranscriptionResult:
        """English text of the speech (see the module docstring)."""
        return await self.transcribe(
            TranscriptionRequest(
                file=request.file,
                filename=request.filename,
                language="en",
                prompt=request.prompt,
                temperature=request.temperature,
                response_format=request.response_format,
                timestamp_granularities=request.timestamp_granularities,
            )
        )


class PiperModel(LocalSpeaker):
    """A Piper voice under a public name (a Speaker)."""

    def __init__(self, config: PiperModelConfig) -> None:
        super().__init__(
            config.path,
            config.config_path,
            intra_op_threads=config.threads,
            concurrency=config.concurrency,
            max_waiting=config.max_waiting,
        )
        self.card = card_of(
            config,
            frozenset({SPEECH}),
            details={"voices": {name: LOCAL_VOICE for name in (*OPENAI_VOICES, LOCAL_VOICE)}},
        )


class ProfanityModel(LocalModerator):
    """The profanity classifier under a public name (a Moderator)."""

    def __init__(self, config: ModerationModelConfig) -> None:
        super().__init__(
            threshold=config.threshold,
            concurrency=config.concurrency,
            max_waiting=config.max_waiting,
        )
        self.card = card_of(
            config,
            frozenset({MODERATION}),
            details={"categories": list(PROFANITY_CATEGORIES), "input_types": ["text"]},
        )

    async def moderate_request(self, request: ModerationRequest) -> list[ModerationResult]:
        """One verdict per text; an input of images only has nothing it can judge (400)."""
        if request.images and not any(text.strip() for text in request.texts):
            raise InvalidRequestError(
                f"Model `{self.card.id}` judges text only; the input has no text.",
                param="input",
                code="unsupported_value",
            )
        return await self.moderate(request.texts)


async def audio_seconds(content: bytes) -> float:
    """The upload's length in seconds, decoded off the event loop (AudioDecodeError: 400)."""
    from ezlink.backends.audio_codec import WHISPER_SAMPLE_RATE, decode_audio

    samples = await asyncio.to_thread(decode_audio, content, sample_rate=WHISPER_SAMPLE_RATE)
    return float(samples.size / WHISPER_SAMPLE_RATE)
