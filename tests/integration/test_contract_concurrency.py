"""Many clients at once: every request succeeds with its own, correct vectors."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import numpy as np
import openai

from tests.support.server import ServerProcess

CLIENTS = 32
REQUESTS = 200
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "river",
    "mountain",
    "city",
    "music",
    "science",
    "ocean",
    "forest",
    "light",
]


def corpus(count: int) -> list[str]:
    rng = random.Random(7)
    # Lengths vary so that batches mix short and long inputs (and padding).
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 30))) + f" #{n}" for n in range(count)]


def references(server: ServerProcess, texts: list[str]) -> dict[str, np.ndarray[Any, Any]]:
    """Each text embedded alone, one request at a time."""
    vectors = {}
    with httpx.Client(base_url=server.api_url, headers=server.headers(), timeout=60) as http:
        for text in texts:
            response = http.post("/embeddings", json={"model": "all-minilm-l6-v2", "input": text})
            vectors[text] = np.array(response.json()["data"][0]["embedding"], dtype=np.float32)
    return vectors


async def test_200_concurrent_requests_from_32_clients_all_get_correct_vectors(
    server: ServerProcess,
) -> None:
    texts = corpus(40)
    expected = references(server, texts)
    rng = random.Random(11)
    # Each request: 1 to 4 texts, so requests overlap and share batches.
    requests = [rng.sample(texts, rng.randint(1, 4)) for _ in range(REQUESTS)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(REQUESTS):
        queue.put_nowait(number)
    results: dict[int, openai.types.CreateEmbeddingResponse] = {}

    async def client_loop() -> None:
        async with openai.AsyncOpenAI(
            base_url=server.api_url, api_key=server.master_key, max_retries=0, timeout=120
        ) as client:
            while not queue.empty():
                number = queue.get_nowait()
                results[number] = await client.embeddings.create(
                    model="text-embedding-ada-002", input=requests[number]
                )

    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))

    assert len(results) == REQUESTS
    for number, inputs in enumerate(requests):
        response = results[number]
        assert [item.index for item in response.data] == list(range(len(inputs)))
        for text, item in zip(inputs, response.data, strict=True):
            np.testing.assert_allclose(item.embedding, expected[text], atol=1e-5)
