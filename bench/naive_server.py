"""The naive baseline: one request, one `SentenceTransformer.encode`, no batching.

What a first version of an embeddings endpoint usually is: a FastAPI route
that encodes each request's inputs as they come.

    NAIVE_MODEL_PATH=... uvicorn naive_server:app --app-dir bench --port 8002
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["NAIVE_MODEL_PATH"], device="cpu")
app = FastAPI()


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/embeddings")
def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    given = body["input"]
    texts = [given] if isinstance(given, str) else given
    vectors = model.encode(texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": vector.tolist(), "index": index}
            for index, vector in enumerate(vectors)
        ],
        "model": body.get("model", ""),
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
