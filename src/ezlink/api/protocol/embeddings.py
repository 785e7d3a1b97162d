"""The OpenAI embeddings contract: parsing requests, rendering responses.

Parsing is written out by hand rather than left to pydantic's union
coercion: the contract is strict (no bools for ints, no floats, no empty
strings, no mixed arrays) and every rejection must name its param.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from ezlink.api.protocol.common import optional_str, parse_json_object, short_repr
from ezlink.config import RequestLimitsConfig
from ezlink.engine.rules import check_input_tokens
from ezlink.engine.types import EmbedRequest, EmbedResult, InputType
from ezlink.errors import InvalidRequestError

EncodingFormat = Literal["float", "base64"]
ENCODING_FORMATS: dict[str, EncodingFormat] = {"float": "float", "base64": "base64"}
INPUT_TYPES: dict[str, InputType] = {
    "query": "query",
    "document": "document",
    "passage": "document",
}
INPUT_RULE = (
    "`input` must be a non-empty string, an array of non-empty strings, an array of "
    "token ids (integers >= 0), or an array of non-empty arrays of token ids."
)


@dataclass(frozen=True)
class EmbeddingsCall:
    model: str
    encoding_format: EncodingFormat
    request: EmbedRequest


def _is_token(value: object) -> bool:
    return type(value) is int and value >= 0  # bool is an int subclass: excluded


def parse_input(
    value: object, limits: RequestLimitsConfig
) -> tuple[list[str] | None, list[list[int]] | None]:
    """(texts, None) or (None, token id lists), or InvalidRequestError."""
    if value is None:
        raise InvalidRequestError("Missing required parameter: `input`.", param="input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequestError("`input` must not be an empty string.", param="input")
        return [value], None
    if not isinstance(value, list) or not value:
        raise InvalidRequestError(INPUT_RULE, param="input")
    first = value[0]
    # A flat token array is one input, however long: its length is checked
    # against the per-input token limit, not the count of inputs.
    if len(value) > limits.max_inputs and type(first) is not int:
        raise InvalidRequestError(
            f"`input` has {len(value)} items, more than the limit of {limits.max_inputs} "
            "inputs per request.",
            param="input",
        )
    if isinstance(first, str):
        if all(isinstance(item, str) and item for item in value):
            return value, None
        raise InvalidRequestError(
            "Every item of a string array `input` must be a non-empty string.", param="input"
        )
    if type(first) is int:
        if all(_is_token(item) for item in value):
            check_input_tokens(len(value), 0, limits.max_input_tokens)
            return None, [value]
        raise InvalidRequestError(
            "A token array `input` must hold only integers >= 0.", param="input"
        )
    if isinstance(first, list):
        for index, item in enumerate(value):
            if not (isinstance(item, list) and item and all(_is_token(t) for t in item)):
                raise InvalidRequestError(
                    f"`input[{index}]` must be a non-empty array of integer token ids >= 0.",
                    param="input",
                )
            check_input_tokens(len(item), index, limits.max_input_tokens)
        return None, value
    raise InvalidRequestError(INPUT_RULE, param="input")


def parse_embeddings_call(body: bytes, limits: RequestLimitsConfig) -> EmbeddingsCall:
    return parse_embeddings_fields(parse_json_object(body), limits)


def parse_embeddings_fields(data: dict[str, Any], limits: RequestLimitsConfig) -> EmbeddingsCall:
    """The call from a parsed JSON body (kept by the route, which records
    the model and user of a request it refuses)."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(
            "Missing required parameter: `model` (a non-empty string).", param="model"
        )
    texts, token_ids = parse_input(data.get("input"), limits)
    requested_format = data.get("encoding_format") or "float"
    encoding_format = (
        ENCODING_FORMATS.get(requested_format) if isinstance(requested_format, str) else None
    )
    if encoding_format is None:
        raise InvalidRequestError(
            f"`encoding_format` must be 'float' or 'base64'; got {short_repr(requested_format)}.",
            param="encoding_format",
        )
    dimensions = data.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise InvalidRequestError(
            f"`dimensions` must be an integer >= 1; got {short_repr(dimensions)}.", param="dimensions"
        )
    input_type = optional_str(data, "input_type")
    if input_type is not None and input_type not in INPUT_TYPES:
        raise InvalidRequestError(
            "`input_type` must be 'query', 'document' or 'passage'.", param="input_type"
        )
    return EmbeddingsCall(
        model=model,
        encoding_format=encoding_format,
        request=EmbedRequest(
            texts=texts,
            token_ids=token_ids,
            dimensions=dimensions,
            input_type=INPUT_TYPES[input_type] if input_type else None,
            user=optional_str(data, "user"),
        ),
    )


# Tokens a text input may add beyond one per byte: the special tokens a
# model wraps each input in ([CLS] ... [SEP]).
SPECIAL_TOKENS_PER_INPUT = 2


def embeddings_token_bound(body: dict[str, Any]) -> int:
    """The most tokens an embeddings request can count, from its own size: a
    token is at least one byte of its text (plus each input's special
    tokens); token-id inputs count exactly."""
    value = body.get("input")
    items = value if isinstance(value, list) else [value]
    if items and all(isinstance(item, int) for item in items):
        return len(items)
    total = 0
    for item in items:
        if isinstance(item, str):
            total += len(item.encode("utf-8", "surrogateescape")) + SPECIAL_TOKENS_PER_INPUT
        elif isinstance(item, list):
            total += len(item)
    return total


def render_embeddings(model: str, result: EmbedResult, encoding_format: EncodingFormat) -> bytes:
    """The response body, encoded straight from the numpy rows."""
    vectors = result.vectors
    if encoding_format == "base64":
        little_endian = vectors.astype("<f4", copy=False)
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little_endian]
    else:
        rows = list(np.ascontiguousarray(vectors, dtype=np.float32))
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": row, "index": index}
            for index, row in enumerate(rows)
        ],
        "model": model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
