"""The embeddings contract as the real openai clients see it (sync and async)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.support.server import ServerProcess

TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today.", "I love pizza."]


@pytest.fixture(scope="module")
def sent_bodies() -> list[dict[str, Any]]:
    """The JSON bodies the openai client sent, in order (filled by an httpx hook)."""
    return []


@pytest.fixture(scope="module")
def client(server: ServerProcess, sent_bodies: list[dict[str, Any]]) -> Iterator[openai.OpenAI]:
    def record(request: httpx.Request) -> None:
        if request.content:
            sent_bodies.append(json.loads(request.content))

    http_client = httpx.Client(event_hooks={"request": [record]})
    yield openai.OpenAI(base_url=server.api_url, api_key=server.master_key, http_client=http_client)
    http_client.close()


@pytest.fixture(scope="module")
def raw(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, headers=server.headers(), timeout=60) as http:
        yield http


def vectors_of(response: openai.types.CreateEmbeddingResponse) -> np.ndarray[Any, Any]:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_default_settings_ask_for_base64_and_decode_to_unit_vectors(
    client: openai.OpenAI, sent_bodies: list[dict[str, Any]]
) -> None:
    response = client.embeddings.create(model="text-embedding-ada-002", input=TEXTS)
    assert sent_bodies[-1]["encoding_format"] == "base64"
    vectors = vectors_of(response)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert response.object == "list"
    assert all(item.object == "embedding" for item in response.data)


def test_float_format_gives_the_same_float32_bits_as_base64(client: openai.OpenAI) -> None:
    as_base64 = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS)
    as_float = client.embeddings.create(
        model="all-minilm-l6-v2", input=TEXTS, encoding_format="float"
    )
    assert np.array_equal(vectors_of(as_base64), vectors_of(as_float))


def test_raw_base64_is_little_endian_float32_of_the_float_vector(raw: httpx.Client) -> None:
    body = {"model": "all-minilm-l6-v2", "input": TEXTS[0]}
    encoded = raw.post("/embeddings", json={**body, "encoding_format": "base64"}).json()
    floats = raw.post("/embeddings", json={**body, "encoding_format": "float"}).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    assert np.array_equal(decoded, np.array(floats["data"][0]["embedding"], dtype=np.float32))


def test_data_comes_back_in_input_order(client: openai.OpenAI) -> None:
    texts = [f"sentence number {n} about {topic}" for n, topic in enumerate("abcdefgh")]
    together = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    assert [item.index for item in together.data] == list(range(len(texts)))
    for text, row in zip(texts, vectors_of(together), strict=True):
        alone = vectors_of(client.embeddings.create(model="all-minilm-l6-v2", input=text))[0]
        np.testing.assert_allclose(row, alone, atol=1e-5)


def test_the_response_names_the_model_as_requested(client: openai.OpenAI) -> None:
    for name in ["all-minilm-l6-v2", "text-embedding-ada-002", "text-embedding-3-small"]:
        assert client.embeddings.create(model=name, input="hi").model == name


def test_usage_counts_the_models_own_tokens(client: openai.OpenAI) -> None:
    # [CLS] hello world [SEP]: the model's WordPiece tokens, specials included.
    usage = client.embeddings.create(model="all-minilm-l6-v2", input="hello world").usage
    assert usage.prompt_tokens == usage.total_tokens == 4


def test_usage_adds_up_across_inputs(client: openai.OpenAI) -> None:
    one_by_one = [
        client.embeddings.create(model="all-minilm-l6-v2", input=text).usage.prompt_tokens
        for text in TEXTS
    ]
    together = client.embeddings.create(model="all-minilm-l6-v2", input=TEXTS).usage
    assert together.prompt_tokens == together.total_tokens == sum(one_by_one)


def test_user_is_accepted(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model="all-minilm-l6-v2", input="hi", user="user-1234")
    assert len(response.data) == 1


def test_query_input_type_is_accepted(raw: httpx.Client) -> None:
    body = {"model": "all-minilm-l6-v2", "input": "what is a cat?"}
    plain = raw.post("/embeddings", json=body).json()["data"][0]["embedding"]
    as_query = raw.post("/embeddings", json={**body, "input_type": "query"})
    assert as_query.status_code == 200
    # The default model has no query prefix, so the vector is the same.
    np.testing.assert_allclose(as_query.json()["data"][0]["embedding"], plain, atol=1e-6)


async def test_the_async_client_embeds_concurrently(server: ServerProcess) -> None:
    async with openai.AsyncOpenAI(base_url=server.api_url, api_key=server.master_key) as client:
        responses = await asyncio.gather(
            *(client.embeddings.create(model="text-embedding-ada-002", input=t) for t in TEXTS),
            client.embeddings.create(model="text-embedding-ada-002", input=TEXTS),
        )
    *singles, batch = responses
    alone = np.concatenate([vectors_of(r) for r in singles])
    np.testing.assert_allclose(vectors_of(batch), alone, atol=1e-5)
    assert batch.usage.prompt_tokens == sum(r.usage.prompt_tokens for r in singles)


def test_models_lists_every_public_name(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert {m.id for m in models} >= {
        "all-minilm-l6-v2",
        "text-embedding-ada-002",
        "text-embedding-3-small",
    }
    for model in models:
        assert model.object == "model"
        assert isinstance(model.created, int)
        assert model.owned_by


def test_models_list_has_the_openai_shape(raw: httpx.Client) -> None:
    body = raw.get("/models").json()
    assert body["object"] == "list"
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}


def test_one_model_is_retrieved_by_any_of_its_names(client: openai.OpenAI) -> None:
    model = client.models.retrieve("text-embedding-ada-002")
    assert (model.id, model.object) == ("text-embedding-ada-002", "model")


def test_an_unknown_model_is_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as retrieving:
        client.models.retrieve("gpt-nonexistent")
    with pytest.raises(openai.NotFoundError) as embedding:
        client.embeddings.create(model="gpt-nonexistent", input="hi")
    for caught in (retrieving, embedding):
        assert caught.value.code == "model_not_found"
        assert caught.value.param == "model"
