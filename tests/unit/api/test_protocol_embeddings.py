"""The OpenAI embeddings contract as parsed and rendered by api/protocol.py (no server)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from ezlink.api.protocol.embeddings import EmbeddingsCall, parse_embeddings_call, render_embeddings
from ezlink.config import RequestLimitsConfig
from ezlink.engine.types import EmbedResult
from ezlink.errors import InvalidRequestError

LIMITS = RequestLimitsConfig()
MODEL = "text-embedding-ada-002"


def parse(body: dict[str, Any], limits: RequestLimitsConfig = LIMITS) -> EmbeddingsCall:
    return parse_embeddings_call(orjson.dumps(body), limits)


def rejection(
    body: dict[str, Any] | bytes, limits: RequestLimitsConfig = LIMITS
) -> InvalidRequestError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidRequestError) as caught:
        parse_embeddings_call(raw, limits)
    return caught.value


def test_a_string_input_is_one_text() -> None:
    call = parse({"model": MODEL, "input": "hello"})
    assert call.model == MODEL
    assert call.request.texts == ["hello"]
    assert call.request.token_ids is None


def test_an_array_of_strings_keeps_its_order() -> None:
    call = parse({"model": MODEL, "input": ["b", "a", "c"]})
    assert call.request.texts == ["b", "a", "c"]


def test_a_flat_token_array_is_one_input() -> None:
    call = parse({"model": MODEL, "input": [15339, 1917]})
    assert call.request.token_ids == [[15339, 1917]]
    assert call.request.texts is None


def test_an_array_of_token_arrays_is_one_input_each() -> None:
    call = parse({"model": MODEL, "input": [[1, 2], [3]]})
    assert call.request.token_ids == [[1, 2], [3]]


def test_a_flat_token_array_longer_than_the_input_count_limit_is_still_one_input() -> None:
    call = parse({"model": MODEL, "input": [7] * (LIMITS.max_inputs + 1)})
    assert call.request.count == 1


def test_defaults_are_float_and_no_dimensions() -> None:
    call = parse({"model": MODEL, "input": "x"})
    assert call.encoding_format == "float"
    assert call.request.dimensions is None
    assert call.request.input_type is None
    assert call.request.user is None


def test_null_encoding_format_means_float() -> None:
    assert parse({"model": MODEL, "input": "x", "encoding_format": None}).encoding_format == "float"


def test_optional_fields_are_carried_to_the_engine() -> None:
    call = parse(
        {
            "model": MODEL,
            "input": "x",
            "encoding_format": "base64",
            "dimensions": 64,
            "input_type": "query",
            "user": "user-42",
        }
    )
    assert call.encoding_format == "base64"
    assert call.request.dimensions == 64
    assert call.request.input_type == "query"
    assert call.request.user == "user-42"


def test_passage_input_type_means_document() -> None:
    assert parse({"model": MODEL, "input": "x", "input_type": "passage"}).request.input_type == (
        "document"
    )


def test_unknown_fields_are_ignored_as_openai_does() -> None:
    assert parse({"model": MODEL, "input": "x", "extra": {"a": 1}}).request.texts == ["x"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"model": MODEL, "input": ""}, "input", id="empty-string"),
        pytest.param({"model": MODEL, "input": []}, "input", id="empty-array"),
        pytest.param({"model": MODEL, "input": [""]}, "input", id="array-with-empty-string"),
        pytest.param({"model": MODEL, "input": ["a", ""]}, "input", id="empty-string-later"),
        pytest.param({"model": MODEL, "input": [1.5, 2.0]}, "input", id="floats"),
        pytest.param({"model": MODEL, "input": [1, 2.0]}, "input", id="int-then-float"),
        pytest.param({"model": MODEL, "input": True}, "input", id="bool"),
        pytest.param({"model": MODEL, "input": [True, False]}, "input", id="bools"),
        pytest.param({"model": MODEL, "input": [1, True]}, "input", id="int-then-bool"),
        pytest.param({"model": MODEL, "input": ["a", 1]}, "input", id="string-then-int"),
        pytest.param({"model": MODEL, "input": [1, "a"]}, "input", id="int-then-string"),
        pytest.param({"model": MODEL, "input": [[1], "a"]}, "input", id="array-then-string"),
        pytest.param({"model": MODEL, "input": [[1], []]}, "input", id="empty-token-array"),
        pytest.param({"model": MODEL, "input": [[[1]]]}, "input", id="nested-too-deep"),
        pytest.param({"model": MODEL, "input": [-1]}, "input", id="negative-token"),
        pytest.param({"model": MODEL, "input": [[3, -1]]}, "input", id="negative-nested-token"),
        pytest.param({"model": MODEL, "input": {"text": "a"}}, "input", id="object"),
        pytest.param({"model": MODEL, "input": None}, "input", id="null-input"),
        pytest.param({"model": MODEL}, "input", id="missing-input"),
        pytest.param({"model": MODEL, "input": 5}, "input", id="bare-int"),
        pytest.param({"model": None, "input": "a"}, "model", id="null-model"),
        pytest.param({"model": "", "input": "a"}, "model", id="empty-model"),
        pytest.param({"model": 3, "input": "a"}, "model", id="int-model"),
        pytest.param({"input": "a"}, "model", id="missing-model"),
        pytest.param(
            {"model": MODEL, "input": "a", "encoding_format": "hex"},
            "encoding_format",
            id="unknown-encoding",
        ),
        pytest.param(
            {"model": MODEL, "input": "a", "encoding_format": 1},
            "encoding_format",
            id="int-encoding",
        ),
        pytest.param({"model": MODEL, "input": "a", "dimensions": 0}, "dimensions", id="dim-0"),
        pytest.param({"model": MODEL, "input": "a", "dimensions": -4}, "dimensions", id="dim-neg"),
        pytest.param({"model": MODEL, "input": "a", "dimensions": "8"}, "dimensions", id="dim-str"),
        pytest.param({"model": MODEL, "input": "a", "dimensions": 8.0}, "dimensions", id="dim-flt"),
        pytest.param(
            {"model": MODEL, "input": "a", "dimensions": True}, "dimensions", id="dim-bool"
        ),
        pytest.param({"model": MODEL, "input": "a", "user": 7}, "user", id="int-user"),
        pytest.param(
            {"model": MODEL, "input": "a", "input_type": "search"}, "input_type", id="input-type"
        ),
    ],
)
def test_invalid_requests_are_rejected_naming_the_param(body: dict[str, Any], param: str) -> None:
    assert rejection(body).param == param


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="invalid-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b'{"model": "m", "input": "\xff\xfe"}', id="not-utf8"),
        pytest.param(b'[{"model": "m", "input": "a"}]', id="top-level-array"),
        pytest.param(b'"just a string"', id="top-level-string"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_rejected(raw: bytes) -> None:
    error = rejection(raw)
    assert error.status_code == 400
    assert error.param is None


def test_more_inputs_than_the_limit_names_the_limit_and_the_count() -> None:
    error = rejection({"model": MODEL, "input": ["a"] * 2049})
    assert "2049" in error.message
    assert "2048" in error.message


def test_the_input_count_limit_applies_to_arrays_of_token_arrays() -> None:
    limits = RequestLimitsConfig(max_inputs=2)
    assert "3" in rejection({"model": MODEL, "input": [[1], [2], [3]]}, limits).message


def test_a_token_array_over_the_per_input_limit_names_the_limit_and_the_count() -> None:
    error = rejection({"model": MODEL, "input": [100] * 9000})
    assert error.code == "context_length_exceeded"
    assert "9000" in error.message
    assert "8192" in error.message


def test_the_per_input_limit_names_the_offending_input() -> None:
    error = rejection({"model": MODEL, "input": [[1], [2] * 9000]})
    assert "Input 1" in error.message


def test_rejections_never_quote_a_long_value_in_full() -> None:
    error = rejection({"model": MODEL, "input": "a", "encoding_format": "x" * 1000})
    assert len(error.message) < 200


def result_of(rows: list[list[float]], tokens: int = 5) -> EmbedResult:
    return EmbedResult(vectors=np.array(rows, dtype=np.float32), prompt_tokens=tokens)


def test_a_response_lists_the_vectors_in_input_order_with_usage() -> None:
    body = orjson.loads(render_embeddings(MODEL, result_of([[1.0, 0.0], [0.0, 1.0]], 7), "float"))
    assert body["object"] == "list"
    assert body["model"] == MODEL
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in body["data"])
    assert body["data"][1]["embedding"] == [0.0, 1.0]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_float_rows_round_trip_to_the_same_float32_values() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    body = orjson.loads(render_embeddings(MODEL, result_of([vector.tolist()]), "float"))
    assert np.array_equal(np.array(body["data"][0]["embedding"], dtype=np.float32), vector)


def test_base64_rows_are_little_endian_float32_bytes() -> None:
    vector = np.array([0.5, -1.25, 3.0e-8], dtype=np.float32)
    body = orjson.loads(render_embeddings(MODEL, result_of([vector.tolist()]), "base64"))
    encoded = body["data"][0]["embedding"]
    assert base64.b64decode(encoded) == vector.astype("<f4").tobytes()
