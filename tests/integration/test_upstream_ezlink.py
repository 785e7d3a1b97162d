"""ezlink behind ezlink: a gateway whose model is another ezlink server's model
answers exactly what that server answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from ezlink.engine.cl100k import cl100k
from tests.support.server import ServerProcess, write_config

FRONT_KEY = "sk-front-master-fedcba9876543210"
BACK_MODEL = "all-minilm-l6-v2"
TEXTS = ["The cat sat on the mat.", "Embeddings map text to vectors.", "ezlink"]


@pytest.fixture(scope="module")
def back(server: ServerProcess) -> ServerProcess:
    return server


@pytest.fixture(scope="module")
def front(back: ServerProcess) -> Iterator[ServerProcess]:
    def to_back(name: str, kind: str) -> dict[str, Any]:
        return {
            "name": name,
            "base_url": back.api_url,
            "api_key_env": "BACK_EZLINK_KEY",
            "model": BACK_MODEL,
            "kind": kind,
            "timeout": 30,
        }

    config = write_config(
        {
            "upstreams": [to_back("back", "openai"), to_back("back-as-other", "other")],
            "models": [
                {"kind": "upstream", "id": "remote", "routes": [{"upstream": "back"}]},
                {
                    "kind": "upstream",
                    "id": "remote-other",
                    "routes": [{"upstream": "back-as-other"}],
                },
            ],
        }
    )
    env = {"BACK_EZLINK_KEY": back.master_key or ""}
    with ServerProcess(config=config, env=env, master_key=FRONT_KEY) as process:
        yield process


def embed(server: ServerProcess, model: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        server.api_url + "/embeddings",
        json={"model": model, **body},
        headers=server.headers(),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def vectors(answer: dict[str, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.array([row["embedding"] for row in answer["data"]], dtype=np.float32)


@pytest.mark.parametrize("model", ["remote", "remote-other"])
def test_the_gateway_answers_what_the_upstream_ezlink_answers(
    back: ServerProcess, front: ServerProcess, model: str
) -> None:
    direct = embed(back, BACK_MODEL, input=TEXTS)
    routed = embed(front, model, input=TEXTS)
    np.testing.assert_allclose(vectors(routed), vectors(direct), atol=1e-6)
    assert routed["usage"] == direct["usage"]
    assert routed["model"] == model
    assert [row["index"] for row in routed["data"]] == [0, 1, 2]


def test_the_openai_client_gets_the_same_vectors_through_the_gateway(
    back: ServerProcess, front: ServerProcess
) -> None:
    # openai-python asks for base64 and decodes it itself.
    through = openai.OpenAI(base_url=front.api_url, api_key=FRONT_KEY)
    direct = openai.OpenAI(base_url=back.api_url, api_key=back.master_key)
    a = through.embeddings.create(model="remote", input=TEXTS).data
    b = direct.embeddings.create(model=BACK_MODEL, input=TEXTS).data
    np.testing.assert_allclose(
        [item.embedding for item in a], [item.embedding for item in b], atol=1e-6
    )


@pytest.mark.parametrize("model", ["remote", "remote-other"])
def test_token_ids_and_dimensions_give_the_upstreams_answer(
    back: ServerProcess, front: ServerProcess, model: str
) -> None:
    ids = [cl100k().encode_ordinary(text) for text in TEXTS]
    direct = embed(back, BACK_MODEL, input=ids, dimensions=64)
    routed = embed(front, model, input=ids, dimensions=64)
    assert vectors(routed).shape == (3, 64)
    np.testing.assert_allclose(vectors(routed), vectors(direct), atol=1e-6)


def test_an_input_too_long_for_the_upstream_model_is_the_clients_400(
    front: ServerProcess,
) -> None:
    response = httpx.post(
        front.api_url + "/embeddings",
        json={"model": "remote", "input": "word " * 2000},
        headers=front.headers(),
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "tokens" in error["message"]
