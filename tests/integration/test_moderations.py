"""/v1/moderations: the local profanity classifier on a real `ezlink serve`
(openai-python, as a user writes it), and the relay to a test upstream.

The classifier speaks for `harassment` only: the other categories are false,
and their scores null (None in openai-python), never a made-up 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select

from ezlink.accounts.store.tables import usage_events
from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import DEFAULT_MODERATION_MODEL_ID, Settings, default_media_models
from ezlink.engine.audio_types import MODERATION_CATEGORIES
from tests.support.media_upstream import RELAY_MASTER_KEY, MediaUpstream, relay_config
from tests.support.openai_errors import assert_openai_error
from tests.support.server import ServerProcess

INSULT = "You are a stupid idiot and everyone hates you."
GREETING = "Hello, how are you today?"
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}

needs_classifier = pytest.mark.skipif(
    DEFAULT_MODERATION_MODEL_ID not in {config.id for config in default_media_models()},
    reason="alt-profanity-check is not installed",
)


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.api_url, api_key=server.master_key, max_retries=0) as client:
        yield client


@needs_classifier
def test_an_insult_is_flagged_and_a_greeting_passes(oai: openai.OpenAI) -> None:
    insult = oai.moderations.create(input=INSULT).results[0]
    assert insult.flagged and insult.categories.harassment
    assert insult.category_scores.harassment > 0.8
    greeting = oai.moderations.create(model="omni-moderation-latest", input=GREETING)
    assert not greeting.results[0].flagged
    assert greeting.results[0].category_scores.harassment < 0.2


@needs_classifier
def test_a_list_has_one_result_per_text_and_unjudged_scores_are_none(oai: openai.OpenAI) -> None:
    answer = oai.moderations.create(model="profanity-check", input=[GREETING, INSULT])
    assert answer.model == "profanity-check"
    assert [r.flagged for r in answer.results] == [False, True]
    result = answer.results[1]
    assert result.category_scores.hate is None  # not judged, not "clean"
    assert result.categories.hate is False
    raw = result.model_dump(by_alias=True)
    assert set(raw["categories"]) == set(MODERATION_CATEGORIES)
    assert raw["category_applied_input_types"]["harassment"] == ["text"]
    assert raw["category_applied_input_types"]["violence"] == []


@needs_classifier
def test_text_and_image_parts_are_one_input(oai: openai.OpenAI) -> None:
    answer = oai.moderations.create(input=[{"type": "text", "text": INSULT}, IMAGE])
    assert len(answer.results) == 1 and answer.results[0].flagged


@needs_classifier
def test_bad_moderation_inputs_are_400(server: ServerProcess) -> None:
    url = server.api_url + "/moderations"
    for body in [
        {"input": ""},
        {"input": []},
        {"input": ["fine", " "]},
        {},
        {"input": [{"type": "audio"}]},
        {"input": [IMAGE]},  # images only: the local model judges text
    ]:
        response = httpx.post(url, headers=server.headers(), json=body)
        assert_openai_error(response, 400, param="input")
    assert httpx.post(url, headers=server.headers(), json={"input": "hi"}).status_code == 200


# -- the relay, in-process ------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[MediaUpstream]:
    with MediaUpstream() as media:
        yield media


@pytest_asyncio.fixture(loop_scope="session")
async def app(upstream: MediaUpstream, tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings.model_validate(relay_config(upstream, f"sqlite:///{tmp_path}/usage.db"))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


@pytest.mark.asyncio(loop_scope="session")
async def test_a_relayed_moderation_is_the_upstreams_answer_and_free(
    app: FastAPI, upstream: MediaUpstream
) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    async with openai.AsyncOpenAI(
        base_url="http://ezlink/v1", api_key=RELAY_MASTER_KEY, http_client=http, max_retries=0
    ) as client:
        answer = await client.moderations.create(model="moderation-relay", input=[INSULT, "hi"])
    assert [r.flagged for r in answer.results] == [True, False]
    assert upstream.last("/moderations")["body"] == {
        "input": [INSULT, "hi"],
        "model": "omni-moderation-latest",
    }
    accounts = state_of(app).accounts
    await accounts.recorder.flush()
    async with accounts.store.engine.connect() as connection:
        rows = (await connection.execute(select(usage_events))).mappings().all()
    row = next(r for r in rows if r["model"] == "moderation-relay")
    assert (row["unit"], row["quantity"], row["prompt_tokens"]) == (None, 0, 0)
    assert row["status"] == 200
