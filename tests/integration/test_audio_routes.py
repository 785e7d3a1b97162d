"""/v1/audio: speech and transcription through both local models on a real
`ezlink serve` (openai-python, as a user writes it), the relay to a test
upstream in-process, and every bad input a 4xx in OpenAI's shape.

The local models need their packages (and espeak-ng for the voice); the
tests that use them skip where the default config leaves them out.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import openai
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select

from ezlink.accounts.store.tables import usage_events
from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.backends.audio_codec import encode_speech
from ezlink.config import (
    DEFAULT_SPEECH_MODEL_ID,
    DEFAULT_TRANSCRIPTION_MODEL_ID,
    Settings,
    default_media_models,
)
from tests.support.media_upstream import (
    RELAY_MASTER_KEY,
    SPEECH_BYTES,
    TRANSCRIPT,
    MediaUpstream,
    relay_config,
)
from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess

FOX = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
DEFAULT_IDS = {config.id for config in default_media_models()}
needs_local_audio = pytest.mark.skipif(
    not {DEFAULT_SPEECH_MODEL_ID, DEFAULT_TRANSCRIPTION_MODEL_ID} <= DEFAULT_IDS,
    reason="the local voice or Whisper is not installed",
)


def words_of(text: str) -> set[str]:
    return set(re.sub(r"[^a-z ]", " ", text.lower()).split())


def seconds_of(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return float(samples / container.streams.audio[0].rate)


def tone(seconds: float, response_format: str = "wav", rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return encode_speech(pcm, rate, response_format)  # type: ignore[arg-type]


# -- both local models, on a real server --------------------------------------------


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.api_url, api_key=server.master_key, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def spoken(oai: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FOX, spoken by the local voice as mp3, streamed to a file as a user would."""
    if not {DEFAULT_SPEECH_MODEL_ID, DEFAULT_TRANSCRIPTION_MODEL_ID} <= DEFAULT_IDS:
        pytest.skip("the local voice or Whisper is not installed")
    path = tmp_path_factory.mktemp("speech") / "fox.mp3"
    with oai.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=FOX, response_format="mp3"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        response.stream_to_file(path)
    return path


@needs_local_audio
def test_speech_then_transcription_round_trips_the_words(oai: openai.OpenAI, spoken: Path) -> None:
    assert seconds_of(spoken.read_bytes()) > 2.0  # a playable file
    with spoken.open("rb") as file:
        transcript = oai.audio.transcriptions.create(model="whisper-1", file=file)
    expected = words_of(FOX)
    heard = words_of(transcript.text)
    assert len(expected & heard) >= len(expected) - 2, transcript.text
    assert {"quick", "brown", "fox", "lazy", "dog"} <= heard


@needs_local_audio
def test_speech_streams_as_it_is_made(oai: openai.OpenAI) -> None:
    with oai.audio.speech.with_streaming_response.create(
        model="piper-joe", voice="nova", input=FOX, response_format="wav"
    ) as response:
        chunks = list(response.iter_bytes(chunk_size=None))  # type: ignore[arg-type]
    assert len(chunks) >= 2
    assert seconds_of(b"".join(chunks)) > 2.0


@needs_local_audio
def test_transcription_formats(oai: openai.OpenAI, spoken: Path) -> None:
    audio = spoken.read_bytes()
    text = oai.audio.transcriptions.create(
        model="whisper-1", file=("fox.mp3", audio), response_format="text"
    )
    assert "fox" in str(text).lower()
    srt = oai.audio.transcriptions.create(
        model="whisper-1", file=("fox.mp3", audio), response_format="srt"
    )
    assert re.search(r"^1\n00:00:\d\d,\d{3} --> 00:00:\d\d,\d{3}\n", str(srt))
    vtt = oai.audio.transcriptions.create(
        model="whisper-1", file=("fox.mp3", audio), response_format="vtt"
    )
    assert str(vtt).startswith("WEBVTT\n\n00:00:")
    verbose = oai.audio.transcriptions.create(
        model="whisper-1",
        file=("fox.mp3", audio),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "english"
    assert verbose.duration == pytest.approx(seconds_of(audio), abs=0.1)
    assert verbose.words and verbose.segments
    assert "fox" in {word.word.lower() for word in verbose.words}


@needs_local_audio
def test_translation_of_english_speech_is_its_english_text(
    oai: openai.OpenAI, spoken: Path
) -> None:
    with spoken.open("rb") as file:
        translation = oai.audio.translations.create(model="whisper-1", file=file)
    assert "fox" in translation.text.lower()


def test_bad_audio_inputs_are_4xx_and_the_server_stays_healthy(server: ServerProcess) -> None:
    if DEFAULT_TRANSCRIPTION_MODEL_ID not in DEFAULT_IDS:
        pytest.skip("Whisper is not installed")
    url, headers = server.api_url + "/audio/transcriptions", server.headers()
    model = {"model": "whisper-1"}
    whole_mp3 = tone(3.0, "mp3")
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        # A file that is not audio.
        ({"data": model, "files": {"file": ("a.mp3", b"%PDF-1.4 not audio" * 50)}}, 400, "file"),
        # A truncated mp3.
        (
            {"data": model, "files": {"file": ("a.mp3", whole_mp3[: len(whole_mp3) // 2])}},
            400,
            "file",
        ),
        # A missing file.
        ({"data": model, "files": {"other": ("a.mp3", whole_mp3)}}, 400, "file"),
        # A wrong content type.
        ({"json": {"model": "whisper-1", "file": "abc"}}, 400, None),
        # A format the API does not have.
        (
            {"data": {**model, "response_format": "xml"}, "files": {"file": ("a.wav", tone(1))}},
            400,
            "response_format",
        ),
        # Word timestamps without verbose_json.
        (
            {
                "data": {**model, "timestamp_granularities[]": "word"},
                "files": {"file": ("a.wav", tone(1))},
            },
            400,
            "timestamp_granularities",
        ),
    ]
    for request, status, param in cases:
        response = httpx.post(url, headers=headers, timeout=60, **request)
        assert_openai_error(response, status, param=param)
    assert httpx.get(server.base_url + "/health").status_code == 200
    good = httpx.post(url, headers=headers, data=model, files={"file": ("a.wav", tone(1))})
    assert good.status_code == 200, good.text


def test_bad_speech_inputs_are_400(server: ServerProcess) -> None:
    if DEFAULT_SPEECH_MODEL_ID not in DEFAULT_IDS:
        pytest.skip("the local voice is not installed")
    url, headers = server.api_url + "/audio/speech", server.headers()
    base = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
    for change, param in [
        ({"voice": "nobody"}, "voice"),
        ({"input": ""}, "input"),
        ({"input": "x" * 4097}, "input"),
        ({"speed": 5}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
    ]:
        response = httpx.post(url, headers=headers, json={**base, **change}, timeout=30)
        assert_openai_error(response, 400, param=param)


# -- the relay, in-process ------------------------------------------------------------

# The app's pooled upstream connections live in the loop of its fixture.
relay = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def upstream() -> Iterator[MediaUpstream]:
    with MediaUpstream() as media:
        yield media


@pytest_asyncio.fixture(loop_scope="session")
async def app(upstream: MediaUpstream, tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings.model_validate(relay_config(upstream, f"sqlite:///{tmp_path}/usage.db"))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


def client_for(app: FastAPI) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30)
    return openai.AsyncOpenAI(
        base_url="http://ezlink/v1", api_key=RELAY_MASTER_KEY, http_client=http, max_retries=0
    )


async def usage_rows(app: FastAPI) -> dict[str, Any]:
    accounts = state_of(app).accounts
    await accounts.recorder.flush()
    async with accounts.store.engine.connect() as connection:
        rows = (await connection.execute(select(usage_events))).mappings().all()
    return {row["model"]: row for row in rows}


@relay
async def test_relayed_transcription_is_metered_by_the_seconds_ezlink_decoded(
    app: FastAPI, upstream: MediaUpstream
) -> None:
    async with client_for(app) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-relay", file=("tone.wav", tone(2.5)), language="en"
        )
    assert result.text == TRANSCRIPT
    sent = upstream.last("/audio/transcriptions")
    assert sent["model"] == "whisper-1"  # the upstream's name, re-encoded in the form
    assert sent["fields"]["language"] == ["en"]
    assert sent["files"][0][3] == tone(2.5)
    row = (await usage_rows(app))["whisper-relay"]
    assert row["unit"] == "audio_second"
    assert row["quantity"] == pytest.approx(2.5, abs=0.05)


@relay
async def test_relayed_transcription_refuses_non_audio_before_the_upstream(
    app: FastAPI, upstream: MediaUpstream
) -> None:
    calls = len(upstream.received)
    async with client_for(app) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(
                model="whisper-relay", file=("a.mp3", b"not audio at all" * 100)
            )
    assert caught.value.body["param"] == "file"  # type: ignore[index]
    assert len(upstream.received) == calls


@relay
async def test_a_format_the_upstream_model_lacks_is_400(app: FastAPI) -> None:
    async with client_for(app) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.audio.transcriptions.create(
                model="transcribe-relay", file=("a.wav", tone(1)), response_format="srt"
            )
        assert caught.value.body["param"] == "response_format"  # type: ignore[index]
        text = await client.audio.transcriptions.create(
            model="transcribe-relay", file=("a.wav", tone(1)), response_format="text"
        )
    assert str(text).strip() == TRANSCRIPT


@relay
async def test_relayed_speech_streams_the_upstreams_audio(
    app: FastAPI, upstream: MediaUpstream
) -> None:
    async with (
        client_for(app) as client,
        client.audio.speech.with_streaming_response.create(
            model="tts-relay", voice="coral", input="Hello there.", instructions="cheerful"
        ) as response,
    ):
        audio = b"".join([chunk async for chunk in response.iter_bytes()])
    assert audio == SPEECH_BYTES
    sent = upstream.last("/audio/speech")["body"]
    assert (sent["model"], sent["voice"], sent["instructions"]) == ("tts-1", "coral", "cheerful")
    row = (await usage_rows(app))["tts-relay"]
    assert (row["unit"], row["quantity"]) == ("character", len("Hello there."))


@relay
async def test_an_upload_over_the_limit_is_413_before_it_is_read(app: FastAPI) -> None:
    received = 0

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        await app(scope, counted, send)

    body = b"x" * (30 * 1000 * 1000)
    headers = {
        "Authorization": f"Bearer {RELAY_MASTER_KEY}",
        "Content-Type": "multipart/form-data; boundary=zzz",
    }
    transport = httpx.ASGITransport(app=counting)
    async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as http:
        response = await http.post("/v1/audio/transcriptions", content=body, headers=headers)
    assert_openai_error(response, 413)
    assert received == 0
