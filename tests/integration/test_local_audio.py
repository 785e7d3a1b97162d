"""The local audio and moderation models, end to end in-process (real weights).

Speech needs the `espeak-ng` program (apt-get install espeak-ng); those tests
skip without it.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
from collections.abc import AsyncIterator

import av
import pytest
import pytest_asyncio

from ezlink.backends.audio_codec import AudioDecodeError, decode_audio, encode_speech
from ezlink.engine.audio_types import (
    MODERATION_CATEGORIES,
    SpeechRequest,
    TranscriptionRequest,
)
from ezlink.engine.local_audio import LocalModerator, LocalSpeaker, LocalTranscriber
from ezlink.errors import InvalidRequestError, OverloadedError

FOX = "The quick brown fox jumps over the lazy dog."

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def speaker() -> AsyncIterator[LocalSpeaker]:
    model = LocalSpeaker()
    await model.start()
    yield model
    await model.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def transcriber() -> AsyncIterator[LocalTranscriber]:
    model = LocalTranscriber()
    await model.start()
    yield model
    await model.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def moderator() -> AsyncIterator[LocalModerator]:
    model = LocalModerator()
    await model.start()
    yield model
    await model.stop()


async def speak(speaker: LocalSpeaker, text: str, response_format: str) -> tuple[bytes, int]:
    """The whole response and the number of chunks it came in."""
    request = SpeechRequest(input=text, voice="alloy", response_format=response_format)  # type: ignore[arg-type]
    chunks = [chunk async for chunk in await speaker.speak(request)]
    return b"".join(chunks), len(chunks)


def seconds_of(data: bytes) -> float:
    """The duration PyAV decodes from a file."""
    with av.open(io.BytesIO(data)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    return samples / rate


def words_of(text: str) -> set[str]:
    return set(re.sub(r"[^a-z ]", " ", text.lower()).split())


@needs_espeak
@pytest.mark.parametrize("response_format", ["wav", "mp3"])
async def test_speech_decodes_with_a_duration(speaker: LocalSpeaker, response_format: str) -> None:
    data, _ = await speak(
        speaker, "Hello there. This is a test of the local voice.", response_format
    )
    assert seconds_of(data) > 1.0


@needs_espeak
async def test_speech_streams_a_chunk_per_sentence(speaker: LocalSpeaker) -> None:
    _, chunks = await speak(speaker, "One sentence here. And a second one. And a third.", "wav")
    assert chunks >= 3


@needs_espeak
async def test_speech_refuses_an_unknown_voice(speaker: LocalSpeaker) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await speaker.speak(SpeechRequest(input="hi", voice="nobody"))
    assert caught.value.param == "voice"


@needs_espeak
async def test_round_trip_speech_to_text(
    speaker: LocalSpeaker, transcriber: LocalTranscriber
) -> None:
    audio, _ = await speak(speaker, FOX.lower(), "mp3")
    result = await transcriber.transcribe(
        TranscriptionRequest(file=audio, filename="fox.mp3", timestamp_granularities=("word",))
    )
    expected = words_of(FOX)
    assert len(expected & words_of(result.text)) >= len(expected) - 2, result.text
    assert result.language == "en"
    assert result.duration == pytest.approx(seconds_of(audio), abs=0.1)
    assert result.segments and result.words
    assert all(word.start <= word.end for word in result.words)


async def test_non_audio_is_refused(transcriber: LocalTranscriber) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        await transcriber.transcribe(TranscriptionRequest(file=b"%PDF-1.4 not audio at all" * 40))
    assert caught.value.status_code == 400
    assert caught.value.param == "file"


async def test_truncated_mp3_is_refused(transcriber: LocalTranscriber) -> None:
    # A whole mp3 (with its Info frame, so its header states its length).
    tone = decode_audio(_tone_wav(), sample_rate=22050)
    mp3 = encode_speech((tone * 32767).astype("int16"), 22050, "mp3")
    with pytest.raises(AudioDecodeError):
        await transcriber.transcribe(TranscriptionRequest(file=mp3[: len(mp3) // 2]))


async def test_another_language_is_refused(transcriber: LocalTranscriber) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await transcriber.transcribe(TranscriptionRequest(file=_tone_wav(), language="fr"))
    assert caught.value.param == "language"


async def test_an_insult_is_flagged_and_a_greeting_is_not(moderator: LocalModerator) -> None:
    insult, greeting = await moderator.moderate(
        ["You are a stupid idiot and everyone hates you.", "Hello, how are you today?"]
    )
    assert insult.flagged and insult.categories["harassment"]
    assert insult.category_scores["harassment"] > 0.8
    assert not greeting.flagged
    assert greeting.category_scores["harassment"] < 0.2
    # Only what it judges is scored; the rest is false and unscored.
    assert set(insult.categories) == set(MODERATION_CATEGORIES)
    assert set(insult.category_scores) == {"harassment"}
    assert not insult.categories["hate"] and not insult.categories["violence"]


async def test_a_full_model_refuses_with_retry_after(moderator: LocalModerator) -> None:
    small = LocalModerator(concurrency=1, max_waiting=0)
    await small.start()
    try:
        first = asyncio.ensure_future(small.moderate(["hello"] * 1000))
        await asyncio.sleep(0)  # the first is admitted and running
        with pytest.raises(OverloadedError) as caught:
            small.check_room()
        assert caught.value.status_code == 503
        assert int(caught.value.headers["Retry-After"]) >= 1
        assert len(await first) == 1000
    finally:
        await small.stop()


def _tone_wav(seconds: float = 3.0, rate: int = 22050) -> bytes:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return encode_speech(pcm, rate, "wav")
