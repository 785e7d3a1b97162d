"""Dynamic batching, seen from clients: batching never changes a vector or its place."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import openai

from tests.support.server import ServerProcess

MODEL = "all-minilm-l6-v2"
TEXTS = [
    "hi",
    "A short sentence about rivers.",
    "Embeddings map text to vectors so that similar meanings lie close together, "
    "which is what semantic search relies on when it ranks documents for a query.",
    "The mountain village held its harvest festival in the early autumn.",
    "ok",
    "Batching pads every input to the longest one in its batch; the attention mask "
    "must hide that padding completely, or vectors would depend on their neighbours.",
    "Quiet golden library",
    "What time does the market open on Sundays?",
]


def client(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.api_url, api_key=server.master_key, max_retries=0)


async def embed(api: openai.AsyncOpenAI, texts: list[str]) -> np.ndarray[Any, Any]:
    response = await api.embeddings.create(model=MODEL, input=texts)
    assert [item.index for item in response.data] == list(range(len(texts)))
    return np.array([item.embedding for item in response.data], dtype=np.float32)


async def test_a_text_gets_the_same_vector_alone_or_batched_with_others(
    server: ServerProcess,
) -> None:
    api = client(server)
    alone = [(await embed(api, [text]))[0] for text in TEXTS]
    # Concurrent requests of mixed lengths share batches (and their padding).
    together = await asyncio.gather(*(embed(api, TEXTS) for _ in range(8)))
    for vectors in together:
        np.testing.assert_allclose(vectors, np.array(alone), atol=1e-5)


async def test_every_response_keeps_its_inputs_order_under_concurrency(
    server: ServerProcess,
) -> None:
    api = client(server)
    reference = dict(zip(TEXTS, await embed(api, TEXTS), strict=True))
    rng = random.Random(3)
    orders = [rng.sample(TEXTS, k=rng.randint(1, len(TEXTS))) for _ in range(48)]
    results = await asyncio.gather(*(embed(api, order) for order in orders))
    for order, vectors in zip(orders, results, strict=True):
        expected = np.array([reference[text] for text in order])
        np.testing.assert_allclose(vectors, expected, atol=1e-5)
