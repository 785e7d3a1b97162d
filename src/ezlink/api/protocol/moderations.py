"""OpenAI's /v1/moderations wire format.

``input`` is a string, a list of strings (one result each), or a list of
parts, ``{"type": "text", "text": ...}`` and ``{"type": "image_url",
"image_url": {"url": ...}}`` (one result for them all).

A result lists every category OpenAI has, in ``categories`` (true or false)
and in ``category_scores``: where the model does not judge a category (the
local profanity classifier judges ``harassment`` only), its score is
``null`` and its ``category_applied_input_types`` is empty. Null, not 0.0,
so that nobody reads a missing judgement as "clean"; null, not an absent
key, so that openai-python's ``result.category_scores.hate`` is ``None``
instead of an AttributeError.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import orjson

from ezlink.engine.audio_types import MODERATION_CATEGORIES, ModerationResult
from ezlink.engine.media_types import ModerationRequest
from ezlink.errors import InvalidRequestError

# OpenAI's default model for /v1/moderations.
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


def _empty() -> InvalidRequestError:
    return InvalidRequestError("`input` must not be empty.", param="input")


def _part(part: Any) -> tuple[str | None, int]:
    """(text, images) of one multimodal part; 400 for anything else."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return part["text"], 0
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if isinstance(url, str) and url:
            return None, 1
    raise InvalidRequestError(
        "Each part of `input` must be {type: text, text} or {type: image_url, image_url: {url}}.",
        param="input",
    )


def parse_moderation(data: dict[str, Any], max_inputs: int) -> tuple[str, ModerationRequest]:
    """(model, request); 400 for an empty or malformed `input`."""
    model = data.get("model", DEFAULT_MODERATION_MODEL)
    if model is None:
        model = DEFAULT_MODERATION_MODEL
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("`model` must be a non-empty string.", param="model")
    raw = data.get("input")
    if raw is None:
        raise InvalidRequestError("`input` is required.", param="input")
    if isinstance(raw, str):
        if not raw.strip():
            raise _empty()
        return model, ModerationRequest(input=raw, texts=(raw,))
    if not isinstance(raw, list) or not raw:
        raise (
            _empty()
            if isinstance(raw, list)
            else InvalidRequestError("`input` must be a string or a list.", param="input")
        )
    if len(raw) > max_inputs:
        raise InvalidRequestError(
            f"`input` has {len(raw)} items; at most {max_inputs} are allowed.", param="input"
        )
    if all(isinstance(item, str) for item in raw):
        if any(not item.strip() for item in raw):
            raise _empty()
        return model, ModerationRequest(input=raw, texts=tuple(raw))
    parts = [_part(item) for item in raw]
    texts = [text for text, _ in parts if text is not None]
    images = sum(count for _, count in parts)
    if not images and not any(text.strip() for text in texts):
        raise _empty()
    return model, ModerationRequest(input=raw, texts=(" ".join(texts),), images=images)


# Every category, unjudged: what a result's own verdicts are laid over (in OpenAI's order).
_NOT_FLAGGED = dict.fromkeys(MODERATION_CATEGORIES, False)
_NOT_SCORED: dict[str, float | None] = dict.fromkeys(MODERATION_CATEGORIES, None)
_NOT_APPLIED: dict[str, list[str]] = {name: [] for name in MODERATION_CATEGORIES}
# The input type every judgement applies to: text (images are never judged here).
_TEXT = ["text"]


@functools.lru_cache(maxsize=256)
def _fixed_parts(
    categories: tuple[tuple[str, bool], ...], judged: tuple[str, ...]
) -> tuple[orjson.Fragment, orjson.Fragment]:
    """`categories` and `category_applied_input_types`, serialized once per
    verdict pattern: a long list has a handful of patterns, and OpenAI's
    shape makes them most of each result's bytes."""
    flags = {**_NOT_FLAGGED, **dict(categories)}
    applied = {**_NOT_APPLIED, **dict.fromkeys(judged, _TEXT)}
    return orjson.Fragment(orjson.dumps(flags)), orjson.Fragment(orjson.dumps(applied))


def render_result(result: ModerationResult) -> dict[str, Any]:
    judged = result.category_scores
    categories, applied = _fixed_parts(tuple(result.categories.items()), tuple(judged))
    return {
        "flagged": result.flagged,
        "categories": categories,
        "category_scores": {**_NOT_SCORED, **judged},
        "category_applied_input_types": applied,
    }


def render_moderation(
    model: str, results: list[ModerationResult], request: ModerationRequest
) -> bytes:
    return orjson.dumps(
        {
            "id": f"modr-{uuid.uuid4().hex}",
            "model": model,
            "results": [render_result(result) for result in results],
        }
    )
