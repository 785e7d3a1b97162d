"""How one upstream answer is read: vectors, order, usage, and every way it can be wrong."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from ezlink.config import Settings, UpstreamConfig, load_settings
from ezlink.errors import ConfigError, InvalidRequestError, PayloadTooLargeError
from ezlink.upstreams.client import (
    UpstreamBatch,
    UpstreamCallFailed,
    UpstreamClient,
    parse_retry_after,
    sanitize_message,
)

KEY = "sk-live-upstream-key-0123456789"


def client(kind: str = "openai") -> UpstreamClient:
    config = UpstreamConfig.model_validate(
        {"name": "up", "base_url": "http://up.example/v1", "api_key_env": "UP_KEY", "kind": kind}
    )
    return UpstreamClient(config, environ={"UP_KEY": KEY})


BATCH = UpstreamBatch(model="m", texts=["a", "b", "c"])


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client().read_reply(status, headers or {}, content, BATCH)


def rows(vectors: list[list[float]], as_base64: bool = False) -> list[dict[str, Any]]:
    def encode(v: list[float]) -> Any:
        return base64.b64encode(np.array(v, "<f4").tobytes()).decode() if as_base64 else v

    return [{"embedding": encode(v), "index": i} for i, v in enumerate(vectors)]


def test_vectors_are_put_in_index_order_from_floats_or_base64() -> None:
    for as_base64 in (False, True):
        data = rows([[1, 0], [0, 1], [1, 1]], as_base64)
        answer = reply(200, {"data": list(reversed(data)), "usage": {"prompt_tokens": 9}})
        np.testing.assert_array_equal(answer.vectors, [[1, 0], [0, 1], [1, 1]])
        assert answer.vectors.dtype == np.float32
        assert answer.prompt_tokens == 9


def test_missing_usage_is_none_so_the_router_counts_it() -> None:
    assert reply(200, {"data": rows([[1.0]] * 3)}).prompt_tokens is None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        {"data": "nope"},
        {"data": rows([[1.0]] * 2)},  # wrong number of vectors
        {"data": [{"embedding": [1.0], "index": 0}] * 3},  # repeated index
        {"data": [*rows([[1.0]] * 2), {"embedding": "%%%", "index": 2}]},
        {"data": [*rows([[1.0], [1.0]]), {"embedding": [1.0, 2.0], "index": 2}]},
    ],
    ids=["not-json", "no-list", "wrong-count", "bad-index", "bad-base64", "ragged"],
)
def test_a_malformed_answer_is_an_upstream_failure(content: Any) -> None:
    with pytest.raises(UpstreamCallFailed) as raised:
        reply(200, content)
    assert raised.value.retryable and raised.value.status_code == 502


def test_a_400_from_the_upstream_is_the_clients_400_with_a_clean_message() -> None:
    message = (
        f"Too long; key {KEY} at https://user:pw@10.0.0.1/v1\nTraceback (most recent call last): x"
    )
    body = {"error": {"message": message, "param": "input", "code": "context_length_exceeded"}}
    with pytest.raises(InvalidRequestError) as raised:
        reply(400, body)
    error = raised.value
    assert error.status_code == 400 and error.code == "context_length_exceeded"
    assert error.param == "input"
    assert KEY not in error.message and "pw@" not in error.message
    assert "Traceback" not in error.message and error.message.startswith("Too long")


def test_413_and_422_keep_their_status() -> None:
    with pytest.raises(PayloadTooLargeError):
        reply(413, {"error": {"message": "too big"}})
    with pytest.raises(InvalidRequestError) as raised:
        reply(422, {"error": "bad field"})  # TEI's shape
    assert raised.value.status_code == 422 and raised.value.message == "bad field"


def test_upstream_statuses_are_classified_for_retry() -> None:
    with pytest.raises(UpstreamCallFailed) as raised:
        reply(429, {}, {"retry-after": "3"})
    assert raised.value.retryable and raised.value.retry_after == 3
    for status in (401, 403, 404):
        with pytest.raises(UpstreamCallFailed) as raised:
            reply(status, {})
        assert not raised.value.retryable
    with pytest.raises(UpstreamCallFailed) as raised:
        reply(503, b"<html>down</html>")
    assert raised.value.retryable and "down" not in raised.value.message


def test_openai_kind_forwards_ids_dimensions_and_user_and_asks_base64() -> None:
    batch = UpstreamBatch(model="m", token_ids=[[1, 2]], dimensions=8, user="u")
    assert client("openai").request_body(batch) == {
        "model": "m",
        "input": [[1, 2]],
        "encoding_format": "base64",
        "dimensions": 8,
        "user": "u",
    }
    assert client("other").request_body(batch) == {"model": "m", "input": [[1, 2]]}
    assert client("openai").forwards_token_ids and not client("other").forwards_token_ids


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == 10
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_sanitize_removes_bearer_tokens_and_bounds_length() -> None:
    cleaned = sanitize_message("auth Bearer abc.def failed " + "x" * 1000)
    assert "abc.def" not in cleaned and len(cleaned) <= 400


def settings(data: dict[str, Any], tmp_path: Path) -> Settings:
    path = tmp_path / "ezlink.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_settings(path, environ={})


UP = {"name": "up", "base_url": "http://up.example/v1", "model": "m"}


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"models": [{"kind": "upstream", "id": "r", "routes": [{"upstream": "nope"}]}]}, "nope"),
        ({"models": [{"kind": "upstream", "id": "r", "routes": [{"local": "nope"}]}]}, "nope"),
        ({"upstreams": [{**UP, "base_url": "https://u:secret@up.example"}]}, "api_key_env"),
        (
            {
                "upstreams": [{**UP, "model": None}],
                "models": [{"kind": "upstream", "id": "r", "routes": [{"upstream": "up"}]}],
            },
            "needs a `model`",
        ),
        (
            {
                "upstreams": [UP],
                "models": [
                    {"kind": "upstream", "id": "r", "routes": [{"upstream": "up", "local": "x"}]}
                ],
            },
            "exactly one",
        ),
        ({"upstreams": [UP, UP]}, "unique"),
    ],
    ids=["unknown-upstream", "unknown-local", "credentials-in-url", "no-model", "both", "twice"],
)
def test_bad_routing_config_names_the_problem(
    data: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(data, tmp_path)
    assert complaint in str(raised.value)
