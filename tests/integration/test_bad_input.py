"""Bad input, sent raw: every case a 4xx in the OpenAI error shape, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.openai_errors import UNSET, assert_openai_error
from tests.support.server import ServerProcess

MODEL = "all-minilm-l6-v2"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def raw(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=120) as http:
        yield http


def body(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": "hello", **fields}


# (request body, status, param, code); UNSET: not checked.
BAD_BODIES: list[Any] = [
    pytest.param(body(input=""), 400, "input", UNSET, id="empty-string"),
    pytest.param(body(input=[]), 400, "input", UNSET, id="empty-array"),
    pytest.param(body(input=[""]), 400, "input", UNSET, id="array-of-empty-string"),
    pytest.param(body(input=["ok", ""]), 400, "input", UNSET, id="empty-string-among-others"),
    pytest.param(body(input=[0.5, 1.5]), 400, "input", UNSET, id="floats"),
    pytest.param(body(input=1.5), 400, "input", UNSET, id="bare-float"),
    pytest.param(body(input=[True, False]), 400, "input", UNSET, id="bools"),
    pytest.param(body(input=True), 400, "input", UNSET, id="bare-bool"),
    pytest.param(body(input=["a", 1]), 400, "input", UNSET, id="mixed-string-int"),
    pytest.param(body(input=[1, "a"]), 400, "input", UNSET, id="mixed-int-string"),
    pytest.param(body(input=[[1, 2], 3]), 400, "input", UNSET, id="mixed-array-int"),
    pytest.param(body(input=[[1], []]), 400, "input", UNSET, id="empty-token-array"),
    pytest.param(body(input=[[[1, 2]]]), 400, "input", UNSET, id="nested-too-deep"),
    pytest.param(body(input=[["a"]]), 400, "input", UNSET, id="nested-strings"),
    pytest.param(body(input={"text": "a"}), 400, "input", UNSET, id="object"),
    pytest.param(body(input=None), 400, "input", UNSET, id="null-input"),
    pytest.param({"model": MODEL}, 400, "input", UNSET, id="missing-input"),
    pytest.param(body(input=[-1, 5]), 400, "input", UNSET, id="negative-token-id"),
    pytest.param(body(input=[[5, -1]]), 400, "input", UNSET, id="negative-nested-token-id"),
    pytest.param(body(input=[100256]), 400, "input", UNSET, id="unused-cl100k-id"),
    pytest.param(body(input=[10**12]), 400, "input", UNSET, id="huge-token-id"),
    pytest.param(body(input=[[1], [10**12]]), 400, "input", UNSET, id="huge-nested-token-id"),
    pytest.param(body(input=["a"] * 2049), 400, "input", UNSET, id="2049-inputs"),
    pytest.param(body(input=[[1]] * 2049), 400, "input", UNSET, id="2049-token-arrays"),
    pytest.param(
        body(input="hello " * 9000), 400, "input", "context_length_exceeded", id="9000-token-text"
    ),
    pytest.param(
        body(input=[15339] * 9000), 400, "input", "context_length_exceeded", id="9000-token-ids"
    ),
    pytest.param(body(encoding_format="hex"), 400, "encoding_format", UNSET, id="encoding-hex"),
    pytest.param(body(encoding_format=1), 400, "encoding_format", UNSET, id="encoding-int"),
    pytest.param(body(dimensions=0), 400, "dimensions", UNSET, id="dimensions-0"),
    pytest.param(body(dimensions=-1), 400, "dimensions", UNSET, id="dimensions-negative"),
    pytest.param(body(dimensions=385), 400, "dimensions", UNSET, id="dimensions-too-large"),
    pytest.param(body(dimensions="64"), 400, "dimensions", UNSET, id="dimensions-string"),
    pytest.param(body(dimensions=64.5), 400, "dimensions", UNSET, id="dimensions-float"),
    pytest.param(body(input_type="search"), 400, "input_type", UNSET, id="unknown-input-type"),
    pytest.param(body(user=["u"]), 400, "user", UNSET, id="user-not-a-string"),
    pytest.param(body(model=None), 400, "model", UNSET, id="null-model"),
    pytest.param({"input": "hello"}, 400, "model", UNSET, id="missing-model"),
    pytest.param(body(model=7), 400, "model", UNSET, id="model-not-a-string"),
    pytest.param(body(model="gpt-9"), 404, "model", "model_not_found", id="unknown-model"),
]


@pytest.mark.parametrize(("payload", "status", "param", "code"), BAD_BODIES)
def test_bad_json_bodies_get_an_openai_error(
    raw: httpx.Client, payload: Any, status: int, param: str | None, code: str | None
) -> None:
    response = raw.post("/v1/embeddings", json=payload)
    assert_openai_error(response, status, param=param, code=code)


BAD_BYTES = [
    pytest.param(b'{"model": "all-minilm-l6-v2", "input": ', id="invalid-json"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b'{"model": "all-minilm-l6-v2", "input": "\xff\xfe\xfd"}', id="not-utf8"),
    pytest.param(b'[{"model": "all-minilm-l6-v2", "input": "a"}]', id="top-level-array"),
    pytest.param(b"null", id="top-level-null"),
    pytest.param(b'{"model": "all-minilm-l6-v2", "input": [1e400]}', id="infinite-number"),
    pytest.param(b'{"model": "all-minilm-l6-v2", "input": [NaN]}', id="nan"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested-json"),
]


@pytest.mark.parametrize("content", BAD_BYTES)
def test_bodies_that_are_not_a_json_object_get_a_400(raw: httpx.Client, content: bytes) -> None:
    response = raw.post(
        "/v1/embeddings", content=content, headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 400)


def test_the_input_count_limit_names_the_limit_and_the_count(raw: httpx.Client) -> None:
    error = assert_openai_error(raw.post("/v1/embeddings", json=body(input=["a"] * 2049)), 400)
    assert "2049" in error["message"] and "2048" in error["message"]


def test_a_token_array_over_8192_ids_names_the_limit_and_the_count(raw: httpx.Client) -> None:
    response = raw.post("/v1/embeddings", json=body(input=[15339] * 9000))
    error = assert_openai_error(response, 400)
    assert "9000" in error["message"] and "8192" in error["message"]


def test_a_text_over_the_models_limit_names_the_limit_and_the_count(raw: httpx.Client) -> None:
    # "hello " x 9000 is 9000 WordPiece tokens plus [CLS] and [SEP]; the default
    # model was trained on at most 256 tokens and does not truncate by default.
    response = raw.post("/v1/embeddings", json=body(input="hello " * 9000))
    error = assert_openai_error(response, 400)
    assert "9002" in error["message"] and "256" in error["message"]


def test_the_request_token_limit_names_the_limit_and_the_count(raw: httpx.Client) -> None:
    # 2048 inputs of 200 tokens each: every input fits, the sum (409,600) does not.
    inputs = ["hello " * 198] * 2048
    response = raw.post("/v1/embeddings", json=body(input=inputs))
    error = assert_openai_error(response, 400, param="input")
    assert "409600" in error["message"] and "300000" in error["message"]


def test_the_offending_token_id_is_named(raw: httpx.Client) -> None:
    response = raw.post("/v1/embeddings", json=body(input=[15339, 100256]))
    assert "100256" in assert_openai_error(response, 400)["message"]


def test_a_64_mib_body_with_content_length_is_413(raw: httpx.Client) -> None:
    response = raw.post("/v1/embeddings", content=b" " * (64 * MiB))
    error = assert_openai_error(response, 413)
    assert str(16 * MiB) in error["message"]


def test_a_64_mib_streamed_body_without_content_length_is_413(raw: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "all-minilm-l6-v2", "input": "'
        for _ in range(64):
            yield b"a" * MiB
        yield b'"}'

    response = raw.post("/v1/embeddings", content=chunks())
    assert "content-length" not in response.request.headers
    assert_openai_error(response, 413)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("POST", "/v1/assistants"), ("GET", "/v1/embeddings/extra")],
)
def test_an_unknown_route_is_404(raw: httpx.Client, method: str, path: str) -> None:
    assert_openai_error(raw.request(method, path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/embeddings"), ("DELETE", "/v1/embeddings"), ("POST", "/v1/models")],
)
def test_a_wrong_method_is_405_naming_the_allowed_ones(
    raw: httpx.Client, method: str, path: str
) -> None:
    response = raw.request(method, path)
    assert_openai_error(response, 405)
    assert response.headers["allow"]


def test_an_unknown_model_id_is_404_model_not_found(raw: httpx.Client) -> None:
    response = raw.get("/v1/models/no-such-model")
    assert_openai_error(response, 404, param="model", code="model_not_found")


def test_a_validation_error_is_a_400_naming_the_param_not_fastapis_422(raw: httpx.Client) -> None:
    # A typed query parameter that FastAPI itself validates.
    response = raw.get("/admin/usage", params={"group_by": "fortnight"})
    assert_openai_error(response, 400, param="group_by")


def test_the_server_still_answers_after_the_bad_input(raw: httpx.Client) -> None:
    assert raw.post("/v1/embeddings", json=body()).status_code == 200
