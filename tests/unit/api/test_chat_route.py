"""POST /v1/chat/completions and /v1/completions, in process, with openai-python.

A deterministic echo generator stands behind the routes, so these tests pin
the contract (shapes, streaming, usage, validation, settlement) apart from
any real model; the real local model and the upstream relay have their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import AccountsConfig, ServerConfig, Settings
from ezlink.engine.registry import ModelRegistry
from tests.support.fake_generator import EchoGenerator
from tests.support.openai_errors import assert_openai_error
from tests.support.stub_models import IdleEmbedder

MASTER_KEY = "sk-chat-master-0123456789"
MESSAGES: list[Any] = [
    {"role": "system", "content": "You echo."},
    {"role": "user", "content": "the quick brown fox"},
]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings(
        server=ServerConfig(master_key=MASTER_KEY),
        accounts=AccountsConfig(database_url=f"sqlite:///{tmp_path}/ezlink.db"),
    )
    application = create_app(settings, registry=ModelRegistry([EchoGenerator(), IdleEmbedder()]))
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


@pytest.fixture
def client(app: FastAPI) -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=app)
    return openai.AsyncOpenAI(
        api_key=MASTER_KEY,
        base_url="http://ezlink/v1",
        http_client=httpx.AsyncClient(transport=transport),
        max_retries=0,
    )


async def post(app: FastAPI, path: str, body: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ezlink") as http:
        return await http.post(path, json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"})


async def usage_rows(app: FastAPI) -> list[dict[str, Any]]:
    accounts = state_of(app).accounts
    await accounts.recorder.flush()
    return await accounts.store.usage(group_by="model")


async def test_a_chat_completion_has_openai_shape_and_exact_usage(
    client: openai.AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(model="echo", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.model == "echo"
    assert completion.id.startswith("chatcmpl-")
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "the quick brown fox"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4


async def test_a_stream_yields_pieces_then_the_usage_only_when_asked(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "the quick brown fox"
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)

    stream = await client.chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 4


async def test_n_choices_and_max_tokens(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="echo", messages=MESSAGES, n=2, max_tokens=2
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content == "the quick" for c in completion.choices)
    assert all(c.finish_reason == "length" for c in completion.choices)


async def test_a_legacy_completion(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(model="echo", prompt="hello there")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "hello there"
    stream = await client.completions.create(model="echo", prompt="hello there", stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == "hello there"


async def test_a_failure_after_the_first_piece_ends_the_stream_with_an_error_event(
    app: FastAPI, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one fail-after-first three"}],
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError, match="dropped"):
        async for chunk in stream:
            received.append(chunk)
    assert received and received[-1].choices[0].delta.content == "one"
    (row,) = await usage_rows(app)
    # Billed for what the client received; recorded with the failure's status.
    assert row["completion_tokens"] == 1 and row["errors"] == 1


async def test_every_request_ends_in_one_usage_row(
    app: FastAPI, client: openai.AsyncOpenAI
) -> None:
    await client.chat.completions.create(model="echo", messages=MESSAGES)
    stream = await client.chat.completions.create(model="echo", messages=MESSAGES, stream=True)
    _ = [chunk async for chunk in stream]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="echo", messages=[])
    (row,) = await usage_rows(app)
    assert row["requests"] == 3 and row["errors"] == 1
    assert row["completion_tokens"] == 8


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "echo"}, "messages"),
        ({"model": "echo", "messages": []}, "messages"),
        ({"model": "echo", "messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"model": "echo", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": "echo", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"model": "echo", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": "echo", "messages": MESSAGES, "n": 0}, "n"),
        ({"model": "echo", "messages": MESSAGES, "max_tokens": -1}, "max_tokens"),
        ({"model": "echo", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "echo", "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": "echo", "messages": MESSAGES, "stop": [1]}, "stop"),
        ({"model": "echo", "messages": MESSAGES, "top_logprobs": 3}, "top_logprobs"),
        ({"model": "echo", "messages": MESSAGES, "tools": [{"type": "function"}]}, "tools[0]"),
        ({"model": "echo", "messages": MESSAGES, "stream_options": {}}, "stream_options"),
        (
            {"model": "echo", "messages": [{"role": "tool", "content": "42"}]},
            "messages[0].tool_call_id",
        ),
        ({"messages": MESSAGES}, "model"),
    ],
)
async def test_malformed_requests_are_400_naming_the_param(
    app: FastAPI, body: dict[str, Any], param: str
) -> None:
    assert_openai_error(await post(app, "/v1/chat/completions", body), 400, param=param)


async def test_a_prompt_of_the_wrong_type_is_400(app: FastAPI) -> None:
    response = await post(app, "/v1/completions", {"model": "echo", "prompt": 5})
    assert_openai_error(response, 400, param="prompt")


async def test_an_unknown_model_is_404_and_an_embeddings_model_is_400(app: FastAPI) -> None:
    response = await post(app, "/v1/chat/completions", {"model": "nope", "messages": MESSAGES})
    assert_openai_error(response, 404, code="model_not_found")
    response = await post(app, "/v1/chat/completions", {"model": "idle", "messages": MESSAGES})
    assert_openai_error(response, 400, param="model", code="model_not_supported")
