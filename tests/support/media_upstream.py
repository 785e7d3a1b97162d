"""A fake OpenAI-compatible upstream for images, audio and moderations, served
by uvicorn on a free loopback port in a thread of the test process
(``MediaUpstream``).

Every request is recorded (path, content type, JSON body or form fields, and
the files: field name, filename, content type, bytes), so a test can assert
what ezlink sent: the mapped model name, a re-encoded form, the same files.

Answers:

    POST /v1/images/generations  `n` images of PIXEL (a 1x1 PNG): as `url`
                                 (served at /files/pixel.png) unless
                                 response_format is b64_json; model
                                 `gpt-image-1` answers b64_json and usage,
                                 model `fail-500` answers 500
    POST /v1/images/edits        the first uploaded image, back as b64_json
    POST /v1/images/variations   the same
    POST /v1/audio/speech        SPEECH_BYTES in SPEECH_CHUNKS pieces, streamed
    POST /v1/audio/transcriptions and /translations
                                 TRANSCRIPT, in the response_format asked
    POST /v1/moderations         one result per input; flagged when it says "idiot"
"""

from __future__ import annotations

import base64
import time
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.threaded_server import ThreadedServer

# The smallest PNG: one transparent pixel.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
SPEECH_CHUNKS = 4
SPEECH_BYTES = b"ID3" + bytes(range(256)) * 64
TRANSCRIPT = "Relayed words from the upstream."
IMAGE_TOKENS = {"input_tokens": 50, "output_tokens": 272, "total_tokens": 322}


class MediaUpstream(ThreadedServer):
    """The fake upstream in a thread; a context manager. ``received`` lists requests."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/images/generations", self.generations, methods=["POST"]),
                Route("/v1/images/edits", self.edits, methods=["POST"]),
                Route("/v1/images/variations", self.edits, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcription, methods=["POST"]),
                Route("/v1/audio/translations", self.transcription, methods=["POST"]),
                Route("/v1/moderations", self.moderations, methods=["POST"]),
                Route("/files/pixel.png", self.pixel, methods=["GET"]),
            ]
        )
        super().__init__(self.app)

    def last(self, path: str) -> dict[str, Any]:
        return [r for r in self.received if r["path"].endswith(path)][-1]

    async def record(self, request: Request) -> dict[str, Any]:
        record: dict[str, Any] = {
            "path": request.url.path,
            "content_type": request.headers.get("content-type", ""),
            "authorization": request.headers.get("authorization"),
            "body": None,
            "fields": {},
            "files": [],
        }
        if record["content_type"].startswith("multipart/form-data"):
            form = await request.form()
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    content = await value.read()
                    record["files"].append((key, value.filename, value.content_type, content))
                else:
                    record["fields"].setdefault(key, []).append(value)
            record["model"] = form.get("model")
        else:
            record["body"] = await request.json()
            record["model"] = record["body"].get("model")
        self.received.append(record)
        return record

    async def generations(self, request: Request) -> Response:
        record = await self.record(request)
        body = record["body"]
        if body["model"] == "fail-500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        n = int(body.get("n", 1))
        b64 = body.get("response_format") == "b64_json" or body["model"] == "gpt-image-1"
        item = (
            {"b64_json": base64.b64encode(PIXEL).decode()}
            if b64
            else {"url": f"http://127.0.0.1:{self.port}/files/pixel.png"}
        )
        answer: dict[str, Any] = {"created": int(time.time()), "data": [item] * n}
        if body["model"] == "gpt-image-1":
            answer.update(usage=IMAGE_TOKENS, size=body.get("size", "1024x1024"), quality="high")
        return JSONResponse(answer)

    async def edits(self, request: Request) -> Response:
        record = await self.record(request)
        first = next(content for key, _, _, content in record["files"] if key.startswith("image"))
        n = int(record["fields"].get("n", ["1"])[0])
        data = [{"b64_json": base64.b64encode(first).decode()}] * n
        return JSONResponse({"created": int(time.time()), "data": data})

    async def speech(self, request: Request) -> Response:
        await self.record(request)
        size = len(SPEECH_BYTES) // SPEECH_CHUNKS

        async def chunks() -> Any:
            for start in range(0, len(SPEECH_BYTES), size):
                yield SPEECH_BYTES[start : start + size]

        return StreamingResponse(chunks(), media_type="audio/mpeg")

    async def transcription(self, request: Request) -> Response:
        record = await self.record(request)
        fmt = record["fields"].get("response_format", ["json"])[0]
        if fmt == "text":
            return PlainTextResponse(TRANSCRIPT + "\n")
        answer: dict[str, Any] = {"text": TRANSCRIPT}
        if str(record["model"]).startswith("gpt-4o"):
            answer["usage"] = {"type": "tokens", "input_tokens": 20, "output_tokens": 7}
        return JSONResponse(answer)

    async def moderations(self, request: Request) -> Response:
        record = await self.record(request)
        given = record["body"]["input"]
        inputs = [given] if isinstance(given, str) else given
        results = [
            {
                "flagged": "idiot" in str(item),
                "categories": {"harassment": "idiot" in str(item)},
                "category_scores": {"harassment": 0.9 if "idiot" in str(item) else 0.01},
            }
            for item in inputs
        ]
        return JSONResponse(
            {"id": "modr-up", "model": "omni-moderation-2024-09-26", "results": results}
        )

    async def pixel(self, request: Request) -> Response:
        return Response(PIXEL, media_type="image/png")


def relay_config(upstream: MediaUpstream, database_url: str) -> dict[str, Any]:
    """Settings (as a mapping) whose models are routed to `upstream` only."""

    def routed(public: str, upstream_model: str, **extra: Any) -> dict[str, Any]:
        route = {"upstream": "media", "model": upstream_model}
        return {"kind": "upstream", "id": public, "routes": [route], **extra}

    return {
        "server": {"master_key": RELAY_MASTER_KEY},
        "accounts": {"database_url": database_url},
        "upstreams": [
            {"name": "media", "base_url": upstream.api_url, "kind": "openai", "timeout": 10}
        ],
        "models": [
            routed("dall-e-2", "dall-e-2"),
            routed("gpt-image-1", "gpt-image-1"),
            # A public name mapped to another upstream name.
            routed("house-images", "dall-e-2"),
            routed("dall-e-3", "dall-e-3"),
            {
                "kind": "upstream",
                "id": "fallback-images",
                "retry": {"retries": 0},
                "routes": [
                    {"upstream": "media", "model": "fail-500"},
                    {"upstream": "media", "model": "dall-e-2", "weight": 0},
                ],
            },
            routed("whisper-relay", "whisper-1"),
            routed("transcribe-relay", "gpt-4o-mini-transcribe"),
            routed("tts-relay", "tts-1"),
            routed("moderation-relay", "omni-moderation-latest"),
        ],
    }


RELAY_MASTER_KEY = "sk-relay-master-0123456789"
