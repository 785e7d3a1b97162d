"""The /v1/moderations wire format: inputs, and results with unjudged scores null."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ezlink.api.protocol.moderations import parse_moderation, render_moderation
from ezlink.engine.audio_types import MODERATION_CATEGORIES, ModerationResult
from ezlink.errors import InvalidRequestError

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_model_defaults_to_openais() -> None:
    model, request = parse_moderation({"input": "hi"}, 10)
    assert model == "omni-moderation-latest"
    assert request.texts == ("hi",)


def test_a_list_of_strings_is_one_text_each() -> None:
    _, request = parse_moderation({"input": ["a", "b"], "model": "m"}, 10)
    assert request.texts == ("a", "b")


def test_parts_are_one_input() -> None:
    parts = [{"type": "text", "text": "hello"}, IMAGE, {"type": "text", "text": "there"}]
    _, request = parse_moderation({"input": parts}, 10)
    assert (request.texts, request.images) == (("hello there",), 1)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": ""},
        {"input": "  "},
        {"input": []},
        {"input": ["ok", ""]},
        {"input": 3},
        {"input": [{"type": "video"}]},
        {"input": [{"type": "image_url", "image_url": {}}]},
        {"input": ["a"] * 11},
        {"input": "a", "model": 5},
    ],
)
def test_bad_inputs_are_400(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_moderation(body, 10)
    assert caught.value.param in ("input", "model")


def test_render_lists_every_category_with_null_for_the_unjudged() -> None:
    _, request = parse_moderation({"input": "you idiot"}, 10)
    result = ModerationResult.from_profanity(0.97, 0.5)
    body = orjson.loads(render_moderation("profanity-check", [result], request))
    assert body["id"].startswith("modr-") and body["model"] == "profanity-check"
    (item,) = body["results"]
    assert item["flagged"] is True
    assert list(item["categories"]) == list(MODERATION_CATEGORIES)
    assert item["category_scores"]["harassment"] == 0.97
    assert item["category_scores"]["hate"] is None
    assert item["category_applied_input_types"]["harassment"] == ["text"]
    assert item["category_applied_input_types"]["sexual"] == []
