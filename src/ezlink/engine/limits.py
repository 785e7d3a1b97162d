"""The contract's token limits, checked the same way for every kind of model."""

from __future__ import annotations

from collections.abc import Sequence

from ezlink.errors import InvalidRequestError


def check_token_limits(
    counts: Sequence[int], max_input_tokens: int, max_request_tokens: int
) -> None:
    """400 naming the limit and the count when one input, or the request, has too many tokens."""
    for index, count in enumerate(counts):
        if count > max_input_tokens:
            raise InvalidRequestError(
                f"Input {index} has {count} tokens, more than this model's limit of "
                f"{max_input_tokens} tokens per input. Shorten the input.",
                param="input",
                code="context_length_exceeded",
            )
    total = sum(counts)
    if total > max_request_tokens:
        raise InvalidRequestError(
            f"The request has {total} tokens in all, more than the limit of "
            f"{max_request_tokens} tokens per request.",
            param="input",
            code="max_tokens_per_request",
        )
