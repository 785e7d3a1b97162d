"""The request rules every model shares, local or upstream: one home each.

Token limits, the decoding of OpenAI token ids, the ``dimensions`` range and
the Matryoshka reduction are part of the contract, not of a runtime: a
request breaks them (400) or passes them the same way whoever serves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ezlink.engine.cl100k import UnknownTokenError, decode_cl100k
from ezlink.errors import InvalidRequestError

Vectors = npt.NDArray[np.float32]


def check_input_tokens(count: int, index: int, max_input_tokens: int) -> None:
    """400 naming the limit and the count when input `index` has too many tokens."""
    if count > max_input_tokens:
        raise InvalidRequestError(
            f"Input {index} has {count} tokens, more than this model's limit of "
            f"{max_input_tokens} tokens per input. Shorten the input.",
            param="input",
            code="context_length_exceeded",
        )


def check_token_limits(
    counts: Sequence[int], max_input_tokens: int, max_request_tokens: int
) -> None:
    """400 naming the limit and the count when one input, or the request, has too many tokens."""
    for index, count in enumerate(counts):
        check_input_tokens(count, index, max_input_tokens)
    total = sum(counts)
    if total > max_request_tokens:
        raise InvalidRequestError(
            f"The request has {total} tokens in all, more than the limit of "
            f"{max_request_tokens} tokens per request.",
            param="input",
            code="max_tokens_per_request",
        )


def decode_token_inputs(token_ids: Sequence[Sequence[int]]) -> list[str]:
    """The texts of cl100k token-id inputs; 400 for an id outside the vocabulary."""
    try:
        return [decode_cl100k(ids) for ids in token_ids]
    except UnknownTokenError as exc:
        raise InvalidRequestError(str(exc), param="input") from exc


def check_dimensions(dimensions: int | None, width: int, *, model: str, allowed: bool = True) -> None:
    """400 unless `dimensions` is unset, or allowed for `model` and within 1..width."""
    if dimensions is None:
        return
    if not allowed:
        raise InvalidRequestError(
            f"The model `{model}` does not support `dimensions`.", param="dimensions"
        )
    if not 1 <= dimensions <= width:
        raise InvalidRequestError(
            f"`dimensions` must be between 1 and {width} for this model; got {dimensions}.",
            param="dimensions",
        )


def reduce_dimensions(vectors: Vectors, dimensions: int | None, normalize: bool) -> Vectors:
    """Matryoshka: keep the first `dimensions` values, then L2-normalize."""
    if dimensions is not None and dimensions < vectors.shape[1]:
        vectors = vectors[:, :dimensions]
        normalize = True
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return vectors.astype(np.float32, copy=False)
