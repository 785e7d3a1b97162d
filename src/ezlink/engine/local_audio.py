"""Local audio and moderation models: Whisper, a Piper voice, a profanity classifier.

Each model runs its backend on a small thread pool of its own, off the
event loop, and admits at most ``concurrency`` running plus ``max_waiting``
queued requests; past that, ``check_room`` (and every call) raises
OverloadedError (503) with a Retry-After from the recent pace. A request
counts until its work in the pool has finished, even when its client has
gone away, so the bound holds for the CPU, not only for the waiters.

Defaults suit a small CPU machine: one transcription at a time (Whisper
already spreads one run over ``cpu_threads`` cores), one sentence of speech
at a time per core.

Voices: the OpenAI names (alloy, ash, ballad, coral, echo, fable, onyx, nova,
sage, shimmer, verse) all speak with the one local voice, Piper's en_US
"joe" (medium, 22.05 kHz, a US English male voice): clients that hard-code
a name work, and nobody is promised eleven voices. "joe" is accepted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ezlink.engine.audio_types import (
    ModerationResult,
    SpeechRequest,
    TranscriptionRequest,
    TranscriptionResult,
    TranscriptionSegment,
    TranscriptionWord,
)
from ezlink.errors import InvalidRequestError, OverloadedError

if TYPE_CHECKING:
    from ezlink.backends.piper_voice import PiperVoice
    from ezlink.backends.profanity import ProfanityClassifier
    from ezlink.backends.whisper import Transcript, WhisperTranscriber

logger = logging.getLogger(__name__)

T = TypeVar("T")

OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
)
LOCAL_VOICE = "joe"
VOICES: frozenset[str] = frozenset((*OPENAI_VOICES, LOCAL_VOICE))

# OpenAI's limits on /v1/audio/speech.
MAX_SPEECH_CHARS = 4096
MIN_SPEED, MAX_SPEED = 0.25, 4.0


class _Runner:
    """A model's thread pool with bounded admission.

    ``admitted`` counts requests from admission until their last job in the
    pool has finished; a streamed speech request holds its place across its
    sentences.
    """

    def __init__(self, name: str, concurrency: int, max_waiting: int) -> None:
        if concurrency < 1 or max_waiting < 0:
            raise ValueError("concurrency must be >= 1 and max_waiting >= 0")
        self.name = name
        self.concurrency = concurrency
        self.capacity = concurrency + max_waiting
        self.admitted = 0
        self.rejected = 0
        # Seconds one request keeps the pool busy, smoothed: for Retry-After.
        self._request_seconds = 0.0
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.name)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def check_room(self) -> None:
        """Raise OverloadedError (503, Retry-After) when no more may queue."""
        if self.admitted >= self.capacity:
            self.rejected += 1
            raise OverloadedError(
                "The server is overloaded; retry shortly.",
                headers={"Retry-After": str(self._retry_after_seconds())},
            )

    def admit(self) -> None:
        self.check_room()
        self.admitted += 1

    def release(self, busy_seconds: float) -> None:
        self.admitted -= 1
        self._request_seconds = (
            busy_seconds
            if self._request_seconds == 0
            else 0.8 * self._request_seconds + 0.2 * busy_seconds
        )

    def _retry_after_seconds(self) -> int:
        """Seconds until the queue has drained at the recent pace (1 to 60)."""
        waves = self.admitted / self.concurrency
        return max(1, min(60, math.ceil(waves * self._request_seconds)))

    async def run(self, job: Callable[[], T]) -> T:
        """The job's result, run in the pool; a cancelled caller leaves it to finish."""
        if self._executor is None:
            raise RuntimeError(f"{self.name} not started")
        future: Future[T] = self._executor.submit(job)
        return await asyncio.shield(asyncio.wrap_future(future))

    async def run_admitted(self, job: Callable[[], T]) -> T:
        """Admit one request (or raise 503), run its one job, release when it ends."""
        self.admit()
        if self._executor is None:
            self.admitted -= 1
            raise RuntimeError(f"{self.name} not started")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()

        def release(_: Future[T]) -> None:
            # Runs in the worker thread when the job ends (not when the caller
            # stops waiting); the counter belongs to the loop.
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing waits
                loop.call_soon_threadsafe(self.release, time.perf_counter() - started)

        future = self._executor.submit(job)
        future.add_done_callback(release)
        return await asyncio.shield(asyncio.wrap_future(future))


class LocalTranscriber:
    """Whisper tiny.en (by default) answering TranscriptionRequests."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        cpu_threads: int = 2,
        beam_size: int = 5,
        vad_filter: bool = True,
        max_seconds: float | None = None,
        concurrency: int = 1,
        max_waiting: int = 8,
    ) -> None:
        self.model_path = model_path
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.max_seconds = max_seconds
        self.backend: WhisperTranscriber | None = None
        self._runner = _Runner("whisper", concurrency, max_waiting)

    async def start(self) -> None:
        """Load the model off the event loop."""
        from ezlink.backends.whisper import WhisperTranscriber

        self.backend = await asyncio.to_thread(
            WhisperTranscriber,
            self.model_path,
            cpu_threads=self.cpu_threads,
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            max_seconds=self.max_seconds,
        )
        self._runner.start()
        logger.info("whisper ready (%s)", "multilingual" if self.backend.multilingual else "en")

    async def stop(self) -> None:
        self._runner.stop()

    def check_room(self) -> None:
        self._runner.check_room()

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult:
        """Decode and transcribe; AudioDecodeError (400) for a file that is not audio."""
        backend = self.backend
        if backend is None:
            raise RuntimeError("transcriber not started")
        language = (request.language or "").strip().lower() or None
        if language is not None and not backend.multilingual and language != "en":
            raise InvalidRequestError(
                f"This model transcribes English only; language `{request.language}` "
                "is not supported.",
                param="language",
            )

        def job() -> Transcript:
            return backend.transcribe(
                request.file,
                language=language,
                prompt=request.prompt,
                temperature=request.temperature,
                word_timestamps=request.word_timestamps,
            )

        return _transcription_result(await self._runner.run_admitted(job))


def _transcription_result(transcript: Transcript) -> TranscriptionResult:
    return TranscriptionResult(
        text=transcript.text,
        language=transcript.language,
        duration=transcript.duration,
        segments=tuple(
            TranscriptionSegment(
                id=s.id,
                seek=s.seek,
                start=s.start,
                end=s.end,
                text=s.text,
                tokens=s.tokens,
                temperature=s.temperature,
                avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
            )
            for s in transcript.segments
        ),
        words=tuple(TranscriptionWord(w.word, w.start, w.end) for w in transcript.words),
    )


class LocalSpeaker:
    """A Piper voice answering SpeechRequests with encoded audio, sentence by sentence."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        intra_op_threads: int = 1,
        concurrency: int = 2,
        max_waiting: int = 8,
    ) -> None:
        self.model_path = model_path
        self.config_path = config_path
        self.intra_op_threads = intra_op_threads
        self.voice: PiperVoice | None = None
        self._runner = _Runner("piper", concurrency, max_waiting)

    async def start(self) -> None:
        """Load the voice off the event loop (raises VoiceError without espeak-ng)."""
        from ezlink.backends.piper_voice import PiperVoice

        self.voice = await asyncio.to_thread(
            PiperVoice,
            self.model_path,
            self.config_path,
            intra_op_threads=self.intra_op_threads,
        )
        self._runner.start()
        logger.info("piper voice ready (%d Hz)", self.voice.sample_rate)

    async def stop(self) -> None:
        self._runner.stop()

    def check_room(self) -> None:
        self._runner.check_room()

    @property
    def sample_rate(self) -> int:
        if self.voice is None:
            raise RuntimeError("speaker not started")
        return self.voice.sample_rate

    async def speak(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        """Check the request and room now; then the encoded audio as it is made.

        Raises InvalidRequestError (400) or OverloadedError (503) here, before
        the first byte, so the caller can still answer with an error.
        """
        voice = self.voice
        if voice is None:
            raise RuntimeError("speaker not started")
        check_speech_request(request)
        self._runner.check_room()
        return self._stream(voice, request)

    async def _stream(self, voice: PiperVoice, request: SpeechRequest) -> AsyncIterator[bytes]:
        from ezlink.backends.audio_codec import SpeechEncoder
        from ezlink.backends.piper_voice import split_sentences

        self._runner.admitted += 1
        started = time.perf_counter()
        encoder = SpeechEncoder(request.response_format, voice.sample_rate)
        finished = False
        try:
            for sentence in split_sentences(request.input):

                def job(sentence: str = sentence) -> bytes:
                    return b"".join(
                        encoder.encode(pcm) for pcm in voice.stream(sentence, request.speed)
                    )

                data = await self._runner.run(job)
                if data:
                    yield data
            tail = await self._runner.run(encoder.finish)
            finished = True
            if tail:
                yield tail
        finally:
            if not finished:
                encoder.close()
            self._runner.release(time.perf_counter() - started)


def check_speech_request(request: SpeechRequest) -> None:
    """Raise InvalidRequestError for what the local voice cannot do."""
    if not request.input.strip():
        raise InvalidRequestError("`input` is empty.", param="input")
    if len(request.input) > MAX_SPEECH_CHARS:
        raise InvalidRequestError(
            f"`input` is longer than {MAX_SPEECH_CHARS} characters.", param="input"
        )
    if request.voice not in VOICES:
        raise InvalidRequestError(
            f"Unknown voice `{request.voice}`; use one of {', '.join(sorted(VOICES))}.",
            param="voice",
        )
    if not MIN_SPEED <= request.speed <= MAX_SPEED:
        raise InvalidRequestError(
            f"`speed` must be between {MIN_SPEED} and {MAX_SPEED}.", param="speed"
        )


class LocalModerator:
    """The profanity classifier answering moderation requests (see engine.audio_types)."""

    def __init__(
        self, *, threshold: float = 0.5, concurrency: int = 1, max_waiting: int = 32
    ) -> None:
        self.threshold = threshold
        self.backend: ProfanityClassifier | None = None
        self._runner = _Runner("moderation", concurrency, max_waiting)

    async def start(self) -> None:
        """Load the classifier off the event loop (about 2 s: scikit-learn)."""
        from ezlink.backends.profanity import ProfanityClassifier

        self.backend = await asyncio.to_thread(ProfanityClassifier)
        self._runner.start()

    async def stop(self) -> None:
        self._runner.stop()

    def check_room(self) -> None:
        self._runner.check_room()

    async def moderate(self, texts: Sequence[str]) -> list[ModerationResult]:
        """One verdict per text, in input order."""
        backend = self.backend
        if backend is None:
            raise RuntimeError("moderator not started")
        scores = await self._runner.run_admitted(lambda: backend.score(list(texts)))
        return [ModerationResult.from_profanity(score, self.threshold) for score in scores]
