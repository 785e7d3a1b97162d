"""OpenAI's /v1/audio wire format: speech (JSON in, audio out), transcriptions
and translations (multipart in; json, text, srt, vtt or verbose_json out)."""

from __future__ import annotations

import math
from typing import Any, Literal, cast, get_args

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from ezlink.api.protocol.common import optional_str, short_repr
from ezlink.engine.audio_types import SpeechRequest as SpeechRequest
from ezlink.engine.audio_types import (
    TimestampGranularity,
    TranscriptionFormat,
    TranscriptionRequest,
    TranscriptionResult,
)
from ezlink.engine.local_audio import MAX_SPEECH_CHARS, MAX_SPEED, MIN_SPEED
from ezlink.errors import InvalidRequestError, PayloadTooLargeError

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_FORMATS: tuple[str, ...] = get_args(SpeechFormat)
# The Content-Type OpenAI answers each speech format with.
SPEECH_CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
TRANSCRIPTION_FORMATS: tuple[str, ...] = get_args(TranscriptionFormat)
GRANULARITIES: tuple[str, ...] = get_args(TimestampGranularity)
# OpenAI's limit on an audio upload.
MAX_AUDIO_FILE_BYTES = 25 * 1024 * 1024
# What verbose_json calls the languages Whisper names by their ISO 639-1 code.
LANGUAGE_NAMES = {
    "en": "english",
    "de": "german",
    "es": "spanish",
    "fr": "french",
    "it": "italian",
    "ja": "japanese",
    "nl": "dutch",
    "pt": "portuguese",
    "ru": "russian",
    "zh": "chinese",
}


def _required_str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(
            f"`{name}` is required and must be a non-empty string.", param=name
        )
    return value


def _choice(value: str | None, allowed: tuple[str, ...], name: str, default: str) -> str:
    if value is None:
        return default
    if value not in allowed:
        raise InvalidRequestError(
            f"`{name}` must be one of {', '.join(allowed)}; got {short_repr(value)}.",
            param=name,
            code="invalid_value",
        )
    return value


def parse_speech(data: dict[str, Any]) -> tuple[str, SpeechRequest]:
    """(model, request) of a /v1/audio/speech body; 400 naming the field at fault."""
    model = _required_str(data, "model")
    text = data.get("input")
    if not isinstance(text, str):
        raise InvalidRequestError("`input` is required and must be a string.", param="input")
    if not text.strip():
        raise InvalidRequestError("`input` is empty.", param="input")
    if len(text) > MAX_SPEECH_CHARS:
        raise InvalidRequestError(
            f"`input` is longer than {MAX_SPEECH_CHARS} characters.", param="input"
        )
    voice = data.get("voice")
    if isinstance(voice, dict):  # a custom voice, {"id": ...}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise InvalidRequestError("`voice` is required and must be a string.", param="voice")
    fmt = _choice(optional_str(data, "response_format"), SPEECH_FORMATS, "response_format", "mp3")
    speed = data.get("speed", 1.0)
    if speed is None:
        speed = 1.0
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed):
        raise InvalidRequestError("`speed` must be a number.", param="speed")
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidRequestError(
            f"`speed` must be between {MIN_SPEED} and {MAX_SPEED}.", param="speed"
        )
    if (
        _choice(optional_str(data, "stream_format"), ("audio",), "stream_format", "audio")
        != "audio"
    ):
        raise AssertionError  # unreachable: only "audio" is accepted
    request = SpeechRequest(
        input=text,
        voice=voice,
        response_format=cast(SpeechFormat, fmt),
        speed=float(speed),
        instructions=optional_str(data, "instructions"),
    )
    return model, request


def _form_str(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"`{name}` must be a form field, not a file.", param=name)
    return value


async def read_upload(form: FormData, name: str, limit: int) -> tuple[bytes, str]:
    """(bytes, filename) of the form's file `name`: 400 when it is missing or not a
    file, 413 past `limit` (read no further than that)."""
    upload = form.get(name)
    if upload is None:
        raise InvalidRequestError(f"`{name}` is required: upload it as a file.", param=name)
    if not isinstance(upload, UploadFile):
        raise InvalidRequestError(f"`{name}` must be a file upload.", param=name)
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLargeError(
            f"`{name}` is larger than the limit of {limit} bytes.", param=name
        )
    content = await upload.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLargeError(
            f"`{name}` is larger than the limit of {limit} bytes.", param=name
        )
    if not content:
        raise InvalidRequestError(f"`{name}` is empty.", param=name)
    return content, upload.filename or name


async def parse_transcription(
    form: FormData, *, translation: bool
) -> tuple[str, TranscriptionRequest]:
    """(model, request) of a /v1/audio/transcriptions (or translations) form."""
    content, filename = await read_upload(form, "file", MAX_AUDIO_FILE_BYTES)
    model = _form_str(form, "model")
    if not model:
        raise InvalidRequestError("`model` is required.", param="model")
    fmt = _choice(
        _form_str(form, "response_format"), TRANSCRIPTION_FORMATS, "response_format", "json"
    )
    temperature: float | None = None
    raw_temperature = _form_str(form, "temperature")
    if raw_temperature:
        try:
            temperature = float(raw_temperature)
        except ValueError:
            temperature = math.nan
        if not 0.0 <= temperature <= 1.0:
            raise InvalidRequestError(
                "`temperature` must be a number between 0 and 1.", param="temperature"
            )
    granularities: tuple[str, ...] = ("segment",)
    given = [
        value
        for key in ("timestamp_granularities[]", "timestamp_granularities")
        for value in form.getlist(key)
    ]
    if given and not translation:
        for value in given:
            _choice(str(value), GRANULARITIES, "timestamp_granularities", "segment")
        if fmt != "verbose_json":
            raise InvalidRequestError(
                "`timestamp_granularities` needs `response_format` verbose_json.",
                param="timestamp_granularities",
            )
        granularities = tuple(dict.fromkeys(str(value) for value in given))
    request = TranscriptionRequest(
        file=content,
        filename=filename,
        language=None if translation else _form_str(form, "language") or None,
        prompt=_form_str(form, "prompt") or None,
        temperature=temperature,
        response_format=cast(TranscriptionFormat, fmt),
        timestamp_granularities=cast(tuple[TimestampGranularity, ...], granularities),
    )
    return model, request


# -- rendering a local transcription ----------------------------------------------


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(result: TranscriptionResult, separator: str, numbered: bool) -> str:
    blocks = []
    for index, segment in enumerate(result.segments, start=1):
        span = f"{_timestamp(segment.start, separator)} --> {_timestamp(segment.end, separator)}"
        lines = [str(index)] if numbered else []
        blocks.append("\n".join([*lines, span, segment.text.strip()]))
    return "\n\n".join(blocks) + "\n"


def _usage(result: TranscriptionResult) -> dict[str, Any]:
    # OpenAI bills whisper-1 by the second, rounded up, and says so in `usage`.
    return {"type": "duration", "seconds": math.ceil(result.duration)}


def render_transcription(
    result: TranscriptionResult, request: TranscriptionRequest, task: str
) -> tuple[bytes, str]:
    """(body, content type) in the request's response_format."""
    fmt = request.response_format
    if fmt == "text":
        return (result.text.strip() + "\n").encode(), "text/plain; charset=utf-8"
    if fmt == "srt":
        return _cues(result, ",", numbered=True).encode(), "text/plain; charset=utf-8"
    if fmt == "vtt":
        return ("WEBVTT\n\n" + _cues(result, ".", numbered=False)).encode(), "text/vtt"
    if fmt == "json":
        body: dict[str, Any] = {"text": result.text.strip(), "usage": _usage(result)}
        return orjson.dumps(body), "application/json"
    body = {
        "task": task,
        "language": LANGUAGE_NAMES.get(result.language, result.language),
        "duration": round(result.duration, 3),
        "text": result.text.strip(),
    }
    if "segment" in request.timestamp_granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in result.segments
        ]
    if "word" in request.timestamp_granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in result.words
        ]
    body["usage"] = _usage(result)
    return orjson.dumps(body), "application/json"


# -- the multipart body ----------------------------------------------------------

# Form fields and files one request may carry (Starlette's parser bounds them).
MAX_FORM_FILES = 20
MAX_FORM_FIELDS = 100


async def read_multipart(request: Request) -> FormData:
    """The request's multipart form; 400 for another content type or a broken form.
    Its size was bounded by the edge (``server.limits.max_upload_bytes``, 413)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequestError(
            "The request body must be multipart/form-data (with the file under `file` "
            f"or `image`); got Content-Type {short_repr(content_type or 'none')}."
        )
    try:
        return await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS)
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise InvalidRequestError(f"The multipart form could not be read: {detail}") from None
