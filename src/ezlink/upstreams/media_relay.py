"""Images, audio and moderations on a routed model: relayed to its upstreams.

Every call walks the routes of embeddings and chat (``routing``): weighted
order, retries with backoff or after Retry-After, fallback, the circuit
breaker of each upstream, and the routed model's ``timeout``. Each route's
upstream gets the request under *its* model name: JSON bodies with
``model`` replaced, multipart forms re-encoded with the mapped name and the
same files (one-api forwards the original form and cannot remap it).

Sizes are bounded both ways: the uploads by the API (413), the answers
here (a larger one fails the call like a malformed one). Speech streams: the
upstream's audio is passed on as it arrives, once its answer has started
(a failure before that may still fall back; after it, the stream ends).

Images: the upstream's ``data`` is relayed as it came; where the client
asked for ``b64_json`` and the upstream answered with ``url``, the image is
fetched (without the upstream's key: the URL is usually a CDN's) and
inlined. A client asking for ``url`` gets whatever the upstream gave (a
URL, or b64_json from models that only answer that way: no URL is made up).

Transcriptions are metered by the seconds ezlink decodes from the upload
(``engine.audio_models.audio_seconds``), which also refuses a file that is
not audio (400) before any upstream is called.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import httpx

from ezlink.engine.audio_models import audio_seconds
from ezlink.engine.audio_types import SpeechRequest, TranscriptionRequest
from ezlink.engine.media_types import (
    ImageRequest,
    ImageResult,
    MediaReply,
    ModerationRequest,
    UploadedFile,
    check_image_options,
    check_transcription_format,
)
from ezlink.engine.types import IMAGES, MODERATION, SPEECH, TRANSCRIPTION, TRANSLATION
from ezlink.errors import UpstreamError
from ezlink.upstreams.endpoint import UpstreamEndpoint
from ezlink.upstreams.http import UpstreamCallFailed
from ezlink.upstreams.media_calls import (
    deadline_of,
    json_body,
    kept,
    multipart_body,
    open_answer,
    parsed_json,
    transport_failure,
    upstream_of,
    whole_answer,
)
from ezlink.upstreams.routes import Route

if TYPE_CHECKING:
    from ezlink.upstreams.routing import RoutedModel

# The most an answer may carry: n=10 large PNGs in b64_json are ~60 MB.
MAX_IMAGES_ANSWER_BYTES = 96 << 20
# One image fetched from an upstream's `url` into b64_json.
MAX_FETCHED_IMAGE_BYTES = 32 << 20
# Speech: 4096 characters of wav at 24 kHz are ~15 MB.
MAX_SPEECH_BYTES = 64 << 20
# Transcripts (verbose_json with word timestamps of 25 min of audio: a few MB).
MAX_TRANSCRIPT_BYTES = 16 << 20
MAX_MODERATION_BYTES = 8 << 20
FETCH_TIMEOUT_S = 30.0

# The families a routed model relays (the upstream decides what it serves).
MEDIA_CAPABILITIES = frozenset({SPEECH, TRANSCRIPTION, TRANSLATION, MODERATION, IMAGES})


class MediaRelay:
    """Speech, transcription, translation, moderation and images on a routed model."""

    async def speak(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        return await relay_speech(_routed(self), request)

    async def transcribe(self, request: TranscriptionRequest) -> MediaReply:
        return await relay_transcription(_routed(self), request, "audio/transcriptions")

    async def translate(self, request: TranscriptionRequest) -> MediaReply:
        return await relay_transcription(_routed(self), request, "audio/translations")

    async def moderate_request(self, request: ModerationRequest) -> MediaReply:
        return await relay_moderation(_routed(self), request)

    async def make_images(self, request: ImageRequest, b64: bool) -> ImageResult:
        return await relay_images(_routed(self), request, b64)


def _routed(relay: MediaRelay) -> RoutedModel:
    return cast("RoutedModel", relay)


# -- the families -----------------------------------------------------------------


async def relay_transcription(
    model: RoutedModel, request: TranscriptionRequest, path: str
) -> MediaReply:
    seconds = await audio_seconds(request.file)
    upload = UploadedFile(request.file, request.filename, "application/octet-stream")
    fields: dict[str, Any] = {
        "response_format": request.response_format,
        "language": request.language,
        "prompt": request.prompt,
        "temperature": request.temperature,
    }
    if path.endswith("transcriptions"):
        fields["timestamp_granularities[]"] = list(request.timestamp_granularities)
    else:
        fields.pop("language")  # translations always answer in English

    def encode(route: Route) -> tuple[bytes, str]:
        check_transcription_format(route.upstream_model, request.response_format)
        return multipart_body(fields, [("file", upload)], route.upstream_model)

    json_answer = request.response_format in ("json", "verbose_json")
    content, media_type = await whole_answer(model, path, encode, MAX_TRANSCRIPT_BYTES, json_answer)
    return MediaReply(content, media_type, audio_seconds=seconds, tokens=_usage_tokens(content))


async def relay_moderation(model: RoutedModel, request: ModerationRequest) -> MediaReply:
    content, media_type = await whole_answer(
        model,
        "moderations",
        lambda route: json_body({"input": request.input}, route.upstream_model),
        MAX_MODERATION_BYTES,
    )
    return MediaReply(content, media_type)


async def relay_images(model: RoutedModel, request: ImageRequest, b64: bool) -> ImageResult:
    path = f"images/{request.operation}"

    def encode(route: Route) -> tuple[bytes, str]:
        check_image_options(route.upstream_model, request)
        if request.operation == "generations":
            return json_body(request.fields, route.upstream_model)
        files = [(request.image_field, image) for image in request.images]
        if request.mask is not None:
            files.append(("mask", request.mask))
        return multipart_body(request.fields, files, route.upstream_model)

    content, _ = await whole_answer(model, path, encode, MAX_IMAGES_ANSWER_BYTES)
    body = cast(dict[str, Any], parsed_json(content))
    items = body.get("data")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UpstreamError(f"Model `{model.config.id}`: the upstream's answer has no `data` list.")
    if b64:
        body["data"] = [await _inline(item) for item in items]
    return ImageResult(body=body, tokens=_usage_tokens(content))


async def _inline(item: dict[str, Any]) -> dict[str, Any]:
    """The item with its `url` fetched into `b64_json` (when it has no b64_json)."""
    url = item.get("url")
    if item.get("b64_json") or not isinstance(url, str):
        return item
    try:
        async with (
            httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise UpstreamError(
                    f"The upstream's image URL answered HTTP {response.status_code}."
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_FETCHED_IMAGE_BYTES:
                    raise UpstreamError("The upstream's image is larger than we relay.")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise UpstreamError(
            f"The upstream's image could not be fetched ({type(exc).__name__})."
        ) from None
    inlined = {key: value for key, value in item.items() if key != "url"}
    inlined["b64_json"] = base64.b64encode(b"".join(chunks)).decode("ascii")
    return inlined


async def relay_speech(model: RoutedModel, request: SpeechRequest) -> AsyncIterator[bytes]:
    """Start the audio on the first route that answers; then its bytes as they come."""
    deadline = deadline_of(model)
    fields: dict[str, Any] = {
        "input": request.input,
        "voice": request.voice,
        "response_format": request.response_format,
        "speed": request.speed,
    }
    if request.instructions is not None:
        fields["instructions"] = request.instructions

    async def on_route(route: Route) -> tuple[UpstreamEndpoint, httpx.Response]:
        endpoint = upstream_of(route)
        content, content_type = json_body(fields, route.upstream_model)

        async def call() -> tuple[UpstreamEndpoint, httpx.Response]:
            await endpoint.client.slots.acquire()
            try:
                return endpoint, await open_answer(endpoint, "audio/speech", content, content_type)
            except BaseException:
                endpoint.client.slots.release()
                raise

        return await model.call_with_retries(endpoint, lambda: kept(endpoint, call), deadline)

    endpoint, response = await model.first_success(on_route, deadline)
    return UpstreamAudio(endpoint, response)


class UpstreamAudio:
    """An upstream's audio, passed on as it arrives (bounded); ``aclose`` ends it
    and frees the upstream's slot, whether or not it was ever iterated."""

    def __init__(self, endpoint: UpstreamEndpoint, response: httpx.Response) -> None:
        self.endpoint = endpoint
        self.response = response
        self.sent = 0
        self._chunks = response.aiter_bytes()
        self._closed = False

    def __aiter__(self) -> UpstreamAudio:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except httpx.TransportError as exc:
            failure = transport_failure(self.endpoint, exc)
            self.endpoint.record_failure(failure)
            await self.aclose()
            raise failure from None
        self.sent += len(chunk)
        if self.sent > MAX_SPEECH_BYTES:
            await self.aclose()
            raise UpstreamCallFailed(
                self.endpoint.name, f"the audio exceeds {MAX_SPEECH_BYTES >> 20} MiB"
            )
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.response.aclose()
        self.endpoint.client.slots.release()


def _usage_tokens(content: bytes) -> tuple[int, int] | None:
    """(input, output) tokens of an answer's `usage`, where it reports them."""
    data = parsed_json(content)
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    given, made = usage.get("input_tokens"), usage.get("output_tokens")
    if type(given) is not int or type(made) is not int:
        return None
    return given, made
