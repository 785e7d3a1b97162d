"""Chat completions relayed to an OpenAI-compatible upstream, through a real
`ezlink serve`, with the clients people use: openai-python (sync, async,
streams, tool calls, raw responses) and LangChain's ChatOpenAI.

The upstream is the fake one in tests/support/chat_upstream.py: it echoes
the last user message word by word, reports an exact usage of its own (not
a tiktoken count, so ezlink's counting can be told apart), and misbehaves on
demand by model name. Each usage row is read from the server's own SQLite
file once the server has flushed it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.support.chat_upstream import CACHED_TOKENS, SECRET_IN_ERROR, ChatUpstream, usage_for
from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess, free_port, write_config

MASTER_KEY = "sk-relay-master-0123456789abcdef"
# Upstream model behind each public name (chat_upstream's behaviours).
PUBLIC_TO_UPSTREAM = {
    "gpt-4o": "echo",
    "tool-model": "tool-call",
    "quiet-model": "no-usage",
    "dropping-model": "drop-mid-stream",
    "stalling-model": "stall-mid-stream",
    "rejecting-model": "400",
}
HELLO = [{"role": "user", "content": "hello there world"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ChatUpstream]:
    with ChatUpstream() as running:
        yield running


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("relay") / "ezlink.db"


@pytest.fixture(scope="module")
def server(upstream: ChatUpstream, database: Path) -> Iterator[ServerProcess]:
    single = [
        {"kind": "upstream", "id": name, "routes": [{"upstream": "fake", "model": model}]}
        for name, model in PUBLIC_TO_UPSTREAM.items()
    ]
    fallback = {
        "kind": "upstream",
        "id": "fallback-model",
        "routes": [
            {"upstream": "fake", "model": "500"},
            {"upstream": "fake", "model": "echo", "weight": 0},
        ],
    }
    dead = {"kind": "upstream", "id": "dead-model", "routes": [{"upstream": "nowhere"}]}
    config = write_config(
        {
            "accounts": {"database_url": f"sqlite:///{database}", "usage_flush_interval_s": 0.1},
            "upstreams": [
                {"name": "fake", "base_url": upstream.api_url, "kind": "openai"},
                {
                    "name": "nowhere",
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "model": "echo",
                    "kind": "openai",
                },
            ],
            "models": [*single, fallback, dead],
        }
    )
    with ServerProcess(config=config, master_key=MASTER_KEY) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.api_url, api_key=MASTER_KEY, max_retries=0) as opened:
        yield opened


def usage_row(database: Path, request_id: str) -> dict[str, Any]:
    """The usage row of one request, once the server has written it."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(database) as connection:
            connection.row_factory = sqlite3.Row
            row = connection.execute(
                "SELECT * FROM usage_events WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is not None or time.monotonic() > deadline:
            assert row is not None, f"no usage row for {request_id}"
            return dict(row)
        time.sleep(0.05)


def test_a_chat_completion_relays_text_and_the_upstreams_exact_usage(
    client: openai.OpenAI, upstream: ChatUpstream, database: Path
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.model == "gpt-4o"
    assert completion.choices[0].message.content == "hello there world"
    sent = upstream.requests_for("echo")[-1]["body"]
    expected = usage_for(sent, completion_tokens=3)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected["prompt_tokens"]
    assert completion.usage.completion_tokens == 3
    row = usage_row(database, raw.headers["x-request-id"])
    assert (row["prompt_tokens"], row["completion_tokens"]) == (expected["prompt_tokens"], 3)
    assert row["cached_tokens"] == CACHED_TOKENS and not row["counted_by_ezlink"]
    assert row["family"] == "chat" and row["status"] == 200


def test_the_upstream_gets_the_mapped_model_unknown_fields_and_a_usage_request(
    client: openai.OpenAI, upstream: ChatUpstream
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=HELLO,  # type: ignore[arg-type]
        stream=True,
        extra_body={"vendor_option": {"depth": 2}},
    )
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)
    sent = upstream.requests_for("echo")[-1]["body"]
    assert sent["model"] == "echo"
    assert sent["vendor_option"] == {"depth": 2}
    assert sent["stream_options"] == {"include_usage": True}


async def test_the_async_client_streams_with_usage_when_asked(server: ServerProcess) -> None:
    async with openai.AsyncOpenAI(base_url=server.api_url, api_key=MASTER_KEY) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there world"
    # The upstream's own figure, relayed (the fake counts its stream's 5 chunks).
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_tool_calls_come_back_whole_and_streamed(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    completion = client.chat.completions.create(model="tool-model", messages=HELLO, tools=tools)  # type: ignore[arg-type]
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="tool-model",
        messages=HELLO,  # type: ignore[arg-type]
        tools=tools,
        stream=True,
    )
    arguments = "".join(
        piece.function.arguments or ""
        for chunk in stream
        if chunk.choices
        for piece in chunk.choices[0].delta.tool_calls or []
        if piece.function
    )
    assert arguments == '{"city": "Paris"}'


def test_langchain_invokes_streams_and_binds_tools(server: ServerProcess) -> None:
    chat = ChatOpenAI(model="gpt-4o", base_url=server.api_url, api_key=SecretStr(MASTER_KEY))
    assert chat.invoke("hello there world").content == "hello there world"
    assert "".join(str(p.content) for p in chat.stream("one two")) == "one two"

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    tooled = ChatOpenAI(
        model="tool-model", base_url=server.api_url, api_key=SecretStr(MASTER_KEY)
    ).bind_tools([get_weather])
    message = tooled.invoke("weather?")
    assert message.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]
    assert message.tool_calls[0]["args"] == {"city": "Paris"}  # type: ignore[attr-defined]


def test_without_upstream_usage_ezlink_counts_and_says_so(
    client: openai.OpenAI, database: Path
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="quiet-model", messages=HELLO)  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.usage is not None
    # tiktoken's count of "hello there world": 3 tokens.
    assert completion.usage.completion_tokens == 3
    row = usage_row(database, raw.headers["x-request-id"])
    assert row["counted_by_ezlink"] and row["completion_tokens"] == 3


def test_an_upstream_400_comes_back_as_400_cleaned_of_secrets(server: ServerProcess) -> None:
    response = httpx.post(
        server.api_url + "/chat/completions",
        json={"model": "rejecting-model", "messages": HELLO},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    )
    error = assert_openai_error(response, 400)
    assert SECRET_IN_ERROR not in error["message"]
    assert "http" not in error["message"]


def test_a_failing_route_falls_back_before_the_first_byte(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="fallback-model", messages=HELLO)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "hello there world"


def test_an_unreachable_upstream_is_a_5xx_in_openai_shape(server: ServerProcess) -> None:
    response = httpx.post(
        server.api_url + "/chat/completions",
        json={"model": "dead-model", "messages": HELLO, "stream": True},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    assert response.status_code in (502, 503, 504)
    assert_openai_error(response, response.status_code)


def test_a_drop_mid_stream_ends_with_an_error_event_and_bills_what_arrived(
    client: openai.OpenAI, database: Path
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="dropping-model",
        messages=HELLO,  # type: ignore[arg-type]
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in raw.parse():
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    row = usage_row(database, raw.headers["x-request-id"])
    assert row["status"] >= 500 and row["completion_tokens"] >= 1
    assert row["counted_by_ezlink"]


def test_a_client_that_leaves_after_one_chunk_cancels_the_upstream(
    server: ServerProcess, upstream: ChatUpstream, database: Path
) -> None:
    body = {"model": "stalling-model", "messages": HELLO, "stream": True}
    with httpx.stream(
        "POST",
        server.api_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
    ) as response:
        request_id = response.headers["x-request-id"]
        next(response.iter_lines())
        left = time.monotonic()
    record = upstream.requests_for("stall-mid-stream")[-1]
    seen = upstream.wait_for_disconnect(record, timeout=5)
    assert seen is not None, "the upstream never saw the client leave"
    # The bound is generous (a loaded 2-core machine); tests/integration/
    # test_upstream_chat.py measures the close itself within 100 ms.
    assert seen - left < 2.0
    row = usage_row(database, request_id)
    assert row["status"] == 499 and row["completion_tokens"] >= 1
