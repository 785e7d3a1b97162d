"""The default model answers through the real openai client."""

from __future__ import annotations

import numpy as np
import openai

from tests.support.server import ServerProcess


def test_default_model_embeds_through_openai_client(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=server.api_url, api_key=server.master_key)
    response = client.embeddings.create(model="text-embedding-ada-002", input=["a cat", "a dog"])
    assert [item.index for item in response.data] == [0, 1]
    vectors = np.array([item.embedding for item in response.data])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert response.usage.prompt_tokens == response.usage.total_tokens > 0
