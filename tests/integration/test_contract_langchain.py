"""LangChain's OpenAIEmbeddings, default settings: it sends cl100k token arrays."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from langchain_openai import OpenAIEmbeddings
from pydantic import SecretStr

from tests.support.server import ServerProcess

DOCUMENTS = [
    "LangChain splits documents and embeds them.",
    "Embeddings map text to vectors.",
    "The weather in Paris is mild in spring.",
]


@pytest.fixture(scope="module")
def sent_bodies() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def embeddings(
    server: ServerProcess, sent_bodies: list[dict[str, Any]]
) -> Iterator[OpenAIEmbeddings]:
    def record(request: httpx.Request) -> None:
        sent_bodies.append(json.loads(request.content))

    http_client = httpx.Client(event_hooks={"request": [record]})
    # Nothing but the address and the key: the model is text-embedding-ada-002.
    yield OpenAIEmbeddings(
        base_url=server.api_url,
        api_key=SecretStr(server.master_key or ""),
        http_client=http_client,
    )
    http_client.close()


def reference(server: ServerProcess, texts: list[str]) -> np.ndarray[Any, Any]:
    response = httpx.post(
        server.api_url + "/embeddings",
        json={"model": "all-minilm-l6-v2", "input": texts},
        headers=server.headers(),
        timeout=60,
    )
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def test_the_default_model_name_is_an_alias_of_the_default_model(
    embeddings: OpenAIEmbeddings,
) -> None:
    assert embeddings.model == "text-embedding-ada-002"


def test_embed_documents_sends_token_arrays_and_gets_the_texts_vectors(
    embeddings: OpenAIEmbeddings, server: ServerProcess, sent_bodies: list[dict[str, Any]]
) -> None:
    vectors = np.array(embeddings.embed_documents(DOCUMENTS), dtype=np.float32)
    sent = sent_bodies[-1]["input"]
    assert isinstance(sent, list) and all(
        isinstance(ids, list) and all(isinstance(i, int) for i in ids) for ids in sent
    )
    assert vectors.shape == (len(DOCUMENTS), 384)
    np.testing.assert_allclose(vectors, reference(server, DOCUMENTS), atol=1e-5)


def test_embed_query_gives_the_texts_vector(
    embeddings: OpenAIEmbeddings, server: ServerProcess
) -> None:
    query = "How are texts turned into vectors?"
    vector = np.array(embeddings.embed_query(query), dtype=np.float32)
    np.testing.assert_allclose(vector, reference(server, [query])[0], atol=1e-5)


def test_the_query_is_closest_to_the_related_document(embeddings: OpenAIEmbeddings) -> None:
    documents = np.array(embeddings.embed_documents(DOCUMENTS))
    query = np.array(embeddings.embed_query("What is a text embedding?"))
    assert int(np.argmax(documents @ query)) == 1


async def test_the_async_methods_agree_with_the_sync_ones(server: ServerProcess) -> None:
    client = OpenAIEmbeddings(base_url=server.api_url, api_key=SecretStr(server.master_key or ""))
    vectors = np.array(await client.aembed_documents(DOCUMENTS), dtype=np.float32)
    np.testing.assert_allclose(vectors, reference(server, DOCUMENTS), atol=1e-5)
