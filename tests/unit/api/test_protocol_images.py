"""The /v1/images wire format: fields checked before any upstream, image sizes read."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import pytest
from starlette.datastructures import FormData, Headers, UploadFile

from ezlink.api.protocol.images import image_dimensions, parse_generation, parse_upload
from ezlink.engine.media_types import check_image_options
from ezlink.errors import InvalidRequestError

# A 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    ihdr = (
        struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    )
    return b"\x89PNG\r\n\x1a\n" + ihdr


def jpeg(width: int, height: int) -> bytes:
    app0 = (
        b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    )
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def test_image_dimensions() -> None:
    assert image_dimensions(PIXEL) == ("png", 1, 1)
    assert image_dimensions(png(640, 480)) == ("png", 640, 480)
    assert image_dimensions(jpeg(300, 200)) == ("jpeg", 300, 200)
    vp8x = (
        b"RIFF\x00\x00\x00\x00WEBPVP8X"
        + b"\x00" * 8
        + (99).to_bytes(3, "little")
        + (49).to_bytes(3, "little")
    )
    assert image_dimensions(vp8x) == ("webp", 100, 50)
    assert image_dimensions(b"GIF89a....") is None


def test_a_generation_keeps_the_clients_fields() -> None:
    request = parse_generation(
        {"prompt": "a fox", "n": 2, "size": "1024x1024", "quality": "hd", "extra_field": 1}
    )
    assert (request.model, request.n, request.size, request.quality) == (
        "dall-e-2",
        2,
        "1024x1024",
        "hd",
    )
    assert request.fields["extra_field"] == 1 and "model" not in request.fields


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"n": 1.5}, "n"),
        ({"size": "1x1"}, "size"),
        ({"quality": "best"}, "quality"),
        ({"style": "pop"}, "style"),
        ({"response_format": "gif"}, "response_format"),
        ({"background": "green"}, "background"),
        ({"output_format": "bmp"}, "output_format"),
        ({"prompt": None}, "prompt"),
    ],
)
def test_bad_generation_fields_name_their_param(change: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_generation({"prompt": "a fox", **change})
    assert caught.value.param == param


def test_model_rules() -> None:
    with pytest.raises(InvalidRequestError):
        check_image_options("dall-e-3", parse_generation({"prompt": "x", "n": 2}))
    with pytest.raises(InvalidRequestError):
        check_image_options(
            "gpt-image-1", parse_generation({"prompt": "x", "response_format": "url"})
        )
    check_image_options("dall-e-2", parse_generation({"prompt": "x", "n": 10}))


def upload(content: bytes, name: str = "a.png") -> UploadFile:
    return UploadFile(file=io.BytesIO(content), size=len(content), filename=name, headers=Headers())


async def test_an_edit_with_images_and_a_mask() -> None:
    data = FormData(
        [
            ("prompt", "a hat"),
            ("model", "gpt-image-1"),
            ("n", "2"),
            ("image[]", upload(png(8, 8))),
            ("image[]", upload(png(4, 4))),
            ("mask", upload(png(8, 8))),
        ]
    )
    request = await parse_upload(data, "edits")
    assert (request.model, request.n, request.image_field) == ("gpt-image-1", 2, "image[]")
    assert len(request.images) == 2 and request.mask is not None
    assert request.fields == {"prompt": "a hat", "n": "2"}


@pytest.mark.parametrize(
    ("items", "operation", "param"),
    [
        ([("prompt", "x")], "edits", "image"),
        ([("image", upload(png(2, 2)))], "edits", "prompt"),
        ([("prompt", "x"), ("image", upload(b"GIF89a"))], "edits", "image"),
        ([("prompt", "x"), ("image", "not a file")], "edits", "image"),
        (
            [("prompt", "x"), ("image", upload(png(4, 4))), ("mask", upload(png(2, 2)))],
            "edits",
            "mask",
        ),
        (
            [("prompt", "x"), ("image", upload(png(4, 4))), ("mask", upload(jpeg(4, 4)))],
            "edits",
            "mask",
        ),
        ([("image", upload(png(2, 2))), ("image", upload(png(2, 2)))], "variations", "image"),
        ([("image", upload(png(2, 2))), ("n", "0")], "variations", "n"),
    ],
)
async def test_bad_uploads_name_their_param(
    items: list[tuple[str, Any]], operation: str, param: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await parse_upload(FormData(items), operation)
    assert caught.value.param == param
