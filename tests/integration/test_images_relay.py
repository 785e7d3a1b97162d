"""Images through a test upstream (``tests.support.media_upstream``), with
openai-python as a user writes it, in-process (httpx.ASGITransport).

Images are relay only: what comes back is what the upstream sent, under the
upstream's model name that the route maps to; nothing is ever made up here.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select

from ezlink.accounts.store.tables import usage_events
from ezlink.api.state import state_of
from ezlink.app import create_app
from ezlink.config import Settings
from tests.support.media_upstream import PIXEL, RELAY_MASTER_KEY, MediaUpstream, relay_config
from tests.support.openai_errors import assert_openai_error

# The app's pooled upstream connections live in the loop of its fixture.
pytestmark = pytest.mark.asyncio(loop_scope="session")

AUTH = {"Authorization": f"Bearer {RELAY_MASTER_KEY}"}


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[MediaUpstream]:
    with MediaUpstream() as media:
        yield media


@pytest_asyncio.fixture
async def app(upstream: MediaUpstream, tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = Settings.model_validate(relay_config(upstream, f"sqlite:///{tmp_path}/usage.db"))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await state_of(application).loader.wait()
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=30)
    async with openai.AsyncOpenAI(
        base_url="http://ezlink/v1", api_key=RELAY_MASTER_KEY, http_client=http, max_retries=0
    ) as oai:
        yield oai


async def post(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ezlink"
    ) as http:
        return await http.post(path, headers=AUTH, **kwargs)


async def usage_rows(app: FastAPI) -> list[Any]:
    """Every usage row recorded so far (flushed first)."""
    accounts = state_of(app).accounts
    await accounts.recorder.flush()
    async with accounts.store.engine.connect() as connection:
        return list((await connection.execute(select(usage_events))).mappings().all())


async def test_generate_relays_the_upstreams_images_under_the_mapped_model(
    client: openai.AsyncOpenAI, upstream: MediaUpstream
) -> None:
    result = await client.images.generate(
        model="house-images", prompt="a red fox", n=2, size="512x512", response_format="url"
    )
    assert [item.url for item in result.data or []] == [
        f"http://127.0.0.1:{upstream.port}/files/pixel.png"
    ] * 2
    sent = upstream.last("/images/generations")
    assert sent["body"]["model"] == "dall-e-2"  # mapped from house-images
    assert sent["body"]["prompt"] == "a red fox" and sent["body"]["size"] == "512x512"


async def test_a_url_answer_is_fetched_into_b64_json_when_asked(
    client: openai.AsyncOpenAI, upstream: MediaUpstream
) -> None:
    result = await client.images.generate(
        model="dall-e-2", prompt="a fox", response_format="b64_json"
    )
    item = (result.data or [])[0]
    assert item.url is None
    assert base64.b64decode(item.b64_json or "") == PIXEL
    assert upstream.last("/images/generations")["body"]["response_format"] == "b64_json"


async def test_edit_reencodes_the_form_with_the_mapped_model(
    client: openai.AsyncOpenAI, upstream: MediaUpstream
) -> None:
    image, mask = png(4, 3), png(4, 3)
    result = await client.images.edit(
        model="house-images",
        image=("fox.png", image, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="add a hat",
        response_format="b64_json",
    )
    assert base64.b64decode((result.data or [])[0].b64_json or "") == image
    sent = upstream.last("/images/edits")
    assert sent["model"] == "dall-e-2"
    assert sent["fields"]["prompt"] == ["add a hat"]
    files = {key: (name, content) for key, name, _, content in sent["files"]}
    assert files["image"] == ("fox.png", image)
    assert files["mask"] == ("mask.png", mask)


async def test_edit_with_several_images(
    client: openai.AsyncOpenAI, upstream: MediaUpstream
) -> None:
    first, second = png(2, 2), png(3, 3)
    await client.images.edit(
        model="gpt-image-1",
        image=[("a.png", first, "image/png"), ("b.png", second, "image/png")],
        prompt="combine them",
    )
    sent = upstream.last("/images/edits")
    assert [content for _, _, _, content in sent["files"]] == [first, second]
    assert sent["model"] == "gpt-image-1"


async def test_variation(client: openai.AsyncOpenAI, upstream: MediaUpstream) -> None:
    image = png(2, 2)
    result = await client.images.create_variation(
        model="dall-e-2", image=("v.png", image, "image/png"), n=2, response_format="b64_json"
    )
    assert len(result.data or []) == 2
    assert upstream.last("/images/variations")["files"][0][3] == image


async def test_a_failing_route_falls_back(
    client: openai.AsyncOpenAI, upstream: MediaUpstream
) -> None:
    result = await client.images.generate(model="fallback-images", prompt="a fox")
    assert (result.data or [])[0].url is not None
    models = [r["body"]["model"] for r in upstream.received[-2:]]
    assert models == ["fail-500", "dall-e-2"]


async def test_usage_counts_images_by_size_and_quality_and_tokens(
    app: FastAPI, client: openai.AsyncOpenAI
) -> None:
    await client.images.generate(model="gpt-image-1", prompt="a fox", n=3, size="1024x1536")
    await client.images.generate(model="dall-e-2", prompt="a fox", n=2, size="256x256")
    rows = {row["model"]: row for row in await usage_rows(app)}
    image = rows["gpt-image-1"]
    assert (image["unit"], image["quantity"]) == ("image", 3)
    assert (image["prompt_tokens"], image["completion_tokens"]) == (50, 272)
    assert (rows["dall-e-2"]["quantity"], rows["dall-e-2"]["prompt_tokens"]) == (2, 0)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "size": "100x100"}, "size"),
        ({"prompt": "x", "quality": "ultra"}, "quality"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
        ({"prompt": "x", "style": "weird"}, "style"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "model": "gpt-image-1", "response_format": "url"}, "response_format"),
        ({"prompt": "x", "model": "dall-e-3", "n": 2}, "n"),
    ],
)
async def test_bad_generation_requests_are_400(
    app: FastAPI, body: dict[str, Any], param: str
) -> None:
    response = await post(app, "/v1/images/generations", json={"model": "dall-e-2", **body})
    assert_openai_error(response, 400, param=param)


async def test_an_edit_without_an_image_is_400(app: FastAPI) -> None:
    response = await post(
        app, "/v1/images/edits", data={"model": "dall-e-2", "prompt": "x"}, files={"x": b"1"}
    )
    assert_openai_error(response, 400, param="image")


async def test_a_mask_of_another_size_is_400(app: FastAPI) -> None:
    files = [
        ("image", ("a.png", png(4, 4), "image/png")),
        ("mask", ("m.png", png(2, 2), "image/png")),
    ]
    response = await post(
        app, "/v1/images/edits", data={"model": "dall-e-2", "prompt": "x"}, files=files
    )
    assert_openai_error(response, 400, param="mask")


async def test_an_image_that_is_not_an_image_is_400(app: FastAPI) -> None:
    files = {"image": ("a.png", b"not a picture", "image/png")}
    response = await post(
        app, "/v1/images/edits", data={"model": "dall-e-2", "prompt": "x"}, files=files
    )
    assert_openai_error(response, 400, param="image")


async def test_an_edit_as_json_is_400(app: FastAPI) -> None:
    response = await post(app, "/v1/images/edits", json={"model": "dall-e-2", "prompt": "x"})
    assert_openai_error(response, 400)
    healthy = await post(app, "/v1/images/generations", json={"model": "dall-e-2", "prompt": "x"})
    assert healthy.status_code == 200
