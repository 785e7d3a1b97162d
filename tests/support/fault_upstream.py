"""A fake OpenAI-compatible embeddings upstream that misbehaves on request.

Run as a real process (``FaultUpstream`` starts and stops it). It is a raw
asyncio HTTP/1.1 server, so that it can do what a framework would not: close
the connection mid-request, hang, or send broken JSON.

The request's ``model`` picks the behaviour (so one process serves every
case, and each routed model of the gateway under test names one):

    ok              deterministic vectors (``fake_vector``) in the asked encoding,
                    usage = USAGE_PER_INPUT per input
    ok-nousage      the same without `usage`
    ok-float        always float lists, whatever encoding was asked
    error-500       500 with an OpenAI-shaped error
    error-429       429 with Retry-After: 1, always
    error-429-once  429 with Retry-After: 1 the first time, then ok (error-429-once-X:
                    the same, counted apart)
    error-400       400 whose message carries secrets, URL credentials and a stack
    error-401       401 (the gateway's key is wrong)
    hang            never answers
    close           closes the connection without answering
    malformed       200 with a body that is not JSON
    wrong-count     one vector fewer than inputs
    oversize        a valid answer padded with OVERSIZE_PADDING_BYTES of junk, sent
                    in chunks until the gateway stops reading

More than ``--max-inputs`` inputs → 400. GET /calls lists what was received
(model, inputs count, input kind, dimensions, user, encoding, time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import free_port

USAGE_PER_INPUT = 3
DEFAULT_DIMENSION = 8
SECRET_IN_ERROR = "sk-upstream-secret-0123456789"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Past the gateway's reply limit for a few inputs (about 1 MiB + 256 KiB per input),
# yet a valid answer: a gateway without the limit would read it all and answer 200.
OVERSIZE_PADDING_BYTES = 32 << 20
OVERSIZE_CHUNK_BYTES = 1 << 16


def fake_vector(item: object, dimension: int = DEFAULT_DIMENSION) -> list[float]:
    """A vector derived from the input alone, so any test can predict it."""
    seed = json.dumps(item).encode()
    values: list[float] = []
    counter = 0
    while len(values) < dimension:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        values += [(b - 127.5) / 127.5 for b in digest]
        counter += 1
    # float32-exact, so float and base64 answers compare equal.
    return [struct.unpack("<f", struct.pack("<f", v))[0] for v in values[:dimension]]


class FaultServer:
    def __init__(self, max_inputs: int) -> None:
        self.max_inputs = max_inputs
        self.calls: list[dict[str, Any]] = []
        self.seen_models: dict[str, int] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after another on a keep-alive connection, as real upstreams do."""
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in header_lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self.dispatch(method, path, headers, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def dispatch(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> None:
        path, _, query = path.partition("?")
        if method == "GET" and path == "/calls":
            return await respond(writer, 200, {"calls": self.calls})
        if method == "GET" and path == "/health":
            return await respond(writer, 200, {"ok": True})
        if method != "POST" or not path.endswith("/embeddings"):
            return await respond(writer, 404, error_body("no such route"))
        request = json.loads(body)
        model, inputs = request["model"], request["input"]
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        self.calls.append(
            {
                "model": model,
                "count": len(inputs),
                "input_kind": "ids" if inputs and isinstance(inputs[0], list) else "text",
                "dimensions": request.get("dimensions"),
                "user": request.get("user"),
                "encoding_format": request.get("encoding_format"),
                "authorization": headers.get("authorization"),
                "api_key": headers.get("api-key"),
                "query": query,
                "time": time.time(),
            }
        )
        self.seen_models[model] = self.seen_models.get(model, 0) + 1
        if len(inputs) > self.max_inputs:
            return await respond(
                writer, 400, error_body(f"at most {self.max_inputs} inputs per request")
            )
        await self.misbehave(model, request, inputs, writer)

    async def misbehave(
        self, model: str, request: dict[str, Any], inputs: list[Any], writer: asyncio.StreamWriter
    ) -> None:
        if model == "hang":
            await asyncio.sleep(3600)
        elif model == "close":
            writer.transport.abort()
        elif model == "error-500":
            await respond(writer, 500, error_body("internal failure", "server_error"))
        elif model == "error-429" or (
            model.startswith("error-429-once") and self.seen_models[model] == 1
        ):
            await respond(writer, 429, error_body("slow down", "rate_limit"), {"Retry-After": "1"})
        elif model == "error-400":
            message = (
                f"Input too long (key {SECRET_IN_ERROR}, at http://admin:hunter2@internal.example/v1)"
                '\nTraceback (most recent call last):\n  File "/srv/app.py", line 1'
            )
            await respond(writer, 400, error_body(message, code="context_length_exceeded"))
        elif model == "error-401":
            await respond(writer, 401, error_body("bad key"))
        elif model == "oversize":
            await respond_padded(writer, answer(model, request, inputs), OVERSIZE_PADDING_BYTES)
        elif model == "malformed":
            await respond_raw(writer, 200, b'{"object": "list", "data": [')
        else:
            await respond(writer, 200, answer(model, request, inputs))


def answer(model: str, request: dict[str, Any], inputs: list[Any]) -> dict[str, Any]:
    dimension = request.get("dimensions") or DEFAULT_DIMENSION
    as_base64 = request.get("encoding_format") == "base64" and model != "ok-float"
    rows = []
    for index, item in enumerate(inputs):
        vector = fake_vector(item, dimension)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if as_base64
            else vector
        )
        rows.append({"object": "embedding", "embedding": embedding, "index": index})
    if model == "wrong-count":
        rows = rows[:-1]
    rows.reverse()  # `index`, not position, gives the order
    body: dict[str, Any] = {"object": "list", "data": rows, "model": model}
    if model != "ok-nousage":
        tokens = USAGE_PER_INPUT * len(inputs)
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return body


def error_body(
    message: str, kind: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    await respond_raw(writer, status, json.dumps(body).encode(), headers)


def response_head(status: int, length: int, headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"HTTP/1.1 {status} X",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Connection: keep-alive",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def respond_raw(
    writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    writer.write(response_head(status, len(body), headers) + body)
    await writer.drain()


async def respond_padded(writer: asyncio.StreamWriter, body: dict[str, Any], padding: int) -> None:
    """A 200 of `body` with a `padding` field of that many bytes, streamed chunk by chunk."""
    head, tail = json.dumps({**body, "padding": ""}).encode().rsplit(b'""', 1)
    head += b'"'
    tail = b'"' + tail
    writer.write(response_head(200, len(head) + padding + len(tail)) + head)
    chunk = b"x" * OVERSIZE_CHUNK_BYTES
    for start in range(0, padding, OVERSIZE_CHUNK_BYTES):
        # A gateway that stops reading closes the connection: drain() then raises.
        writer.write(chunk[: padding - start])
        await writer.drain()
    writer.write(tail)
    await writer.drain()


async def serve(port: int, max_inputs: int) -> None:
    server = FaultServer(max_inputs)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, limit=2**24)
    async with listener:
        await listener.serve_forever()


class FaultUpstream:
    """The fault server as a subprocess on a free loopback port; a context manager."""

    def __init__(self, max_inputs: int = 2048, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.max_inputs = max_inputs
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    def start(self) -> FaultUpstream:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.fault_upstream",
                "--port",
                str(self.port),
                "--max-inputs",
                str(self.max_inputs),
            ],
            cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("fault upstream exited early")
            try:
                httpx.get(self.base_url + "/health", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("fault upstream did not start")

    def calls(self, model: str | None = None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = httpx.get(self.base_url + "/calls", timeout=5).json()["calls"]
        return [c for c in calls if model is None or c["model"] == model]

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()

    def __enter__(self) -> FaultUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-inputs", type=int, default=2048)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_inputs))


if __name__ == "__main__":
    main()
