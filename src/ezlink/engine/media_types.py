"""The model protocols of speech, transcription, translation, moderation and images.

A local model answers with ``engine.audio_types`` objects (the API renders
them in OpenAI's shapes); a routed model relays the request to an upstream
and answers with the upstream's own body (``MediaReply``), which the API
passes on as it came. Either way the route meters what ezlink measured:
seconds of audio decoded from the upload, characters of speech, images by
size and quality.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ezlink.engine.audio_types import (
    ModerationResult,
    SpeechRequest,
    TranscriptionRequest,
    TranscriptionResult,
)
from ezlink.engine.types import ServedModel
from ezlink.errors import InvalidRequestError


@dataclass(frozen=True)
class MediaReply:
    """An upstream's whole answer, relayed as it came (its `model` aside).

    ``audio_seconds``: the upload's length as ezlink decoded it (transcription
    and translation). ``tokens``: the upstream's usage where it reports one
    (images of gpt-image-1, gpt-4o-transcribe): (input, output).
    """

    content: bytes
    media_type: str
    audio_seconds: float = 0.0
    tokens: tuple[int, int] | None = None


@dataclass(frozen=True)
class UploadedFile:
    """One file of a multipart request."""

    content: bytes
    filename: str
    content_type: str


@dataclass(frozen=True)
class ImageRequest:
    """A validated /v1/images/{generations,edits,variations} request.

    ``fields`` are the client's other fields as it sent them (JSON values, or
    form strings), relayed untouched but for `model`; ``images`` and ``mask``
    are the uploads of an edit or a variation.
    """

    operation: str  # "generations", "edits" or "variations"
    model: str
    fields: dict[str, Any]
    n: int = 1
    size: str | None = None
    quality: str | None = None
    response_format: str | None = None
    images: tuple[UploadedFile, ...] = ()
    mask: UploadedFile | None = None
    # The form field name the images came under ("image" or "image[]").
    image_field: str = "image"


@dataclass(frozen=True)
class ImageResult:
    """The upstream's answer (``data`` items as it sent them, b64 fetched on request)."""

    body: dict[str, Any]
    tokens: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModerationRequest:
    """A validated /v1/moderations request.

    ``input`` is the client's, as sent (relayed as it is); ``texts`` has one
    text per verdict: each string of a list, or the text parts of one
    multimodal input joined. ``images`` counts its image parts.
    """

    input: Any
    texts: tuple[str, ...]
    images: int = 0


class Speaker(ServedModel, Protocol):
    """A model with the `speech` capability."""

    async def speak(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        """Check the request (4xx) and room (503) now; then the audio as it is made."""
        ...


class Transcriber(ServedModel, Protocol):
    """A model with the `transcription` (and maybe `translation`) capability."""

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> TranscriptionResult | MediaReply: ...

    async def translate(
        self, request: TranscriptionRequest
    ) -> TranscriptionResult | MediaReply: ...


class Moderator(ServedModel, Protocol):
    """A model with the `moderation` capability."""

    async def moderate_request(
        self, request: ModerationRequest
    ) -> list[ModerationResult] | MediaReply:
        """One verdict per item of ``request.texts``, in order."""
        ...


class ImageMaker(ServedModel, Protocol):
    """A model with the `images` capability (relayed only: no image model runs here)."""

    async def make_images(self, request: ImageRequest, b64: bool) -> ImageResult: ...


# OpenAI's transcription models that answer in json or text only.
JSON_OR_TEXT_ONLY = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")


def check_transcription_format(model: str, response_format: str) -> None:
    """400 (param response_format) for a format the (upstream) model cannot answer in."""
    if model.startswith(JSON_OR_TEXT_ONLY) and response_format not in ("json", "text"):
        raise InvalidRequestError(
            f"response_format `{response_format}` is not compatible with model `{model}`; "
            "use json or text.",
            param="response_format",
            code="unsupported_value",
        )


def check_image_options(model: str, request: ImageRequest) -> None:
    """400 for what OpenAI's image models refuse: dall-e-3 makes one image a
    call; gpt-image-1 answers b64_json only and takes no `style`."""
    if model.startswith("dall-e-3") and request.n != 1:
        raise InvalidRequestError(
            f"Model `{model}` makes one image per request; `n` must be 1.",
            param="n",
            code="unsupported_value",
        )
    if model.startswith("gpt-image") and request.response_format == "url":
        raise InvalidRequestError(
            f"Model `{model}` answers with b64_json only; response_format `url` is not supported.",
            param="response_format",
            code="unsupported_value",
        )
