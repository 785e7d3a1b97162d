"""The /v1/audio wire format: speech bodies, transcription forms, rendering."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.datastructures import FormData, Headers, UploadFile

from ezlink.api.protocol.audio import (
    MAX_AUDIO_FILE_BYTES,
    parse_speech,
    parse_transcription,
    render_transcription,
)
from ezlink.engine.audio_types import (
    TranscriptionRequest,
    TranscriptionResult,
    TranscriptionSegment,
    TranscriptionWord,
)
from ezlink.errors import InvalidRequestError, PayloadTooLargeError


def speech(**change: Any) -> dict[str, Any]:
    return {"model": "tts-1", "voice": "alloy", "input": "Hello.", **change}


def test_speech_defaults_are_openais() -> None:
    model, request = parse_speech(speech())
    assert model == "tts-1"
    assert (request.response_format, request.speed, request.instructions) == ("mp3", 1.0, None)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"input": 3}, "input"),
        ({"input": "   "}, "input"),
        ({"input": "x" * 4097}, "input"),
        ({"voice": ""}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": "fast"}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"speed": True}, "speed"),
        ({"stream_format": "sse"}, "stream_format"),
    ],
)
def test_bad_speech_fields_name_their_param(change: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_speech(speech(**change))
    assert caught.value.param == param


def form(fields: dict[str, Any], file: bytes | None = b"RIFF....") -> FormData:
    items: list[tuple[str, Any]] = list(fields.items())
    if file is not None:
        upload = UploadFile(
            file=__import__("io").BytesIO(file), size=len(file), filename="a.wav", headers=Headers()
        )
        items.append(("file", upload))
    return FormData(items)


async def test_a_transcription_form() -> None:
    model, request = await parse_transcription(
        form(
            {
                "model": "whisper-1",
                "response_format": "verbose_json",
                "timestamp_granularities[]": "word",
                "language": "en",
                "temperature": "0.2",
            }
        ),
        translation=False,
    )
    assert model == "whisper-1"
    assert request.timestamp_granularities == ("word",)
    assert (request.language, request.temperature, request.filename) == ("en", 0.2, "a.wav")


@pytest.mark.parametrize(
    ("fields", "file", "param"),
    [
        ({"model": "whisper-1"}, None, "file"),
        ({"model": "whisper-1"}, b"", "file"),
        ({}, b"abc", "model"),
        ({"model": "whisper-1", "response_format": "xml"}, b"abc", "response_format"),
        ({"model": "whisper-1", "temperature": "hot"}, b"abc", "temperature"),
        ({"model": "whisper-1", "temperature": "2"}, b"abc", "temperature"),
        (
            {"model": "whisper-1", "timestamp_granularities[]": "word"},
            b"a",
            "timestamp_granularities",
        ),
    ],
)
async def test_bad_transcription_forms_name_their_param(
    fields: dict[str, Any], file: bytes | None, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await parse_transcription(form(fields, file), translation=False)
    assert caught.value.param == param


async def test_a_file_over_25_mb_is_413() -> None:
    with pytest.raises(PayloadTooLargeError):
        await parse_transcription(
            form({"model": "whisper-1"}, b"x" * (MAX_AUDIO_FILE_BYTES + 1)), translation=False
        )


RESULT = TranscriptionResult(
    text=" Hello there. General Kenobi.",
    language="en",
    duration=3.2,
    segments=(
        TranscriptionSegment(0, 0, 0.0, 1.5, " Hello there.", (1, 2), 0.0, -0.2, 1.1, 0.01),
        TranscriptionSegment(1, 0, 1.5, 3.25, " General Kenobi.", (3,), 0.0, -0.3, 1.0, 0.02),
    ),
    words=(TranscriptionWord(" Hello", 0.0, 0.5),),
)


def render(fmt: str, **extra: Any) -> tuple[str, str]:
    request = TranscriptionRequest(file=b"", response_format=fmt, **extra)  # type: ignore[arg-type]
    body, media_type = render_transcription(RESULT, request, "transcribe")
    return body.decode(), media_type


def test_render_json_text_srt_vtt() -> None:
    body, media_type = render("json")
    assert media_type == "application/json"
    assert orjson.loads(body) == {
        "text": "Hello there. General Kenobi.",
        "usage": {"type": "duration", "seconds": 4},
    }
    assert render("text")[0] == "Hello there. General Kenobi.\n"
    assert render("srt")[0] == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:00:01,500 --> 00:00:03,250\nGeneral Kenobi.\n"
    )
    assert render("vtt")[0].startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.")


def test_render_verbose_json_by_granularity() -> None:
    body = orjson.loads(render("verbose_json", timestamp_granularities=("word",))[0])
    assert (body["task"], body["language"], body["duration"]) == ("transcribe", "english", 3.2)
    assert body["words"] == [{"word": "Hello", "start": 0.0, "end": 0.5}]
    assert "segments" not in body
    body = orjson.loads(render("verbose_json")[0])
    assert [s["text"] for s in body["segments"]] == [" Hello there.", " General Kenobi."]
