"""OpenAI's /v1/images wire format: generations (JSON), edits and variations
(multipart: one or several images, and a mask).

What is checked here, before any upstream is called: `n` (1 to 10), `size`,
`quality`, `style`, `response_format`, `background`, `output_format`, a
prompt where one is needed, at least one image for an edit or a variation,
that each upload is a PNG, JPEG or WebP image, and that a mask is a PNG of
the first image's size. Other fields are relayed as the client sent them.
"""

from __future__ import annotations

import struct
from typing import Any

from starlette.datastructures import FormData, UploadFile

from ezlink.api.protocol.common import short_repr
from ezlink.engine.media_types import ImageRequest, UploadedFile
from ezlink.errors import InvalidRequestError, PayloadTooLargeError

MAX_IMAGES = 10
MAX_PROMPT_CHARS = 32_000
# gpt-image-1 takes up to 16 images of up to 50 MB each (the upload limit bounds the sum).
MAX_EDIT_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
SIZES = (
    "auto",
    "256x256",
    "512x512",
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "1792x1024",
    "1024x1792",
)
CHOICES: dict[str, tuple[str, ...]] = {
    "size": SIZES,
    "quality": ("auto", "standard", "hd", "low", "medium", "high"),
    "style": ("vivid", "natural"),
    "response_format": ("url", "b64_json"),
    "background": ("auto", "transparent", "opaque"),
    "output_format": ("png", "jpeg", "webp"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("low", "high"),
}
# OpenAI's default model for /v1/images.
DEFAULT_IMAGE_MODEL = "dall-e-2"


def _check_choices(fields: dict[str, Any]) -> None:
    for name, allowed in CHOICES.items():
        value = fields.get(name)
        if value is not None and value not in allowed:
            raise InvalidRequestError(
                f"`{name}` must be one of {', '.join(allowed)}; got {short_repr(value)}.",
                param=name,
                code="invalid_value",
            )


def _count(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGES:
        raise InvalidRequestError(
            f"`n` must be an integer from 1 to {MAX_IMAGES}; got {short_repr(value)}.", param="n"
        )
    return value


def _prompt(fields: dict[str, Any]) -> None:
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError("`prompt` is required and must not be empty.", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequestError(
            f"`prompt` is longer than {MAX_PROMPT_CHARS} characters.", param="prompt"
        )


def _request(operation: str, fields: dict[str, Any], **uploads: Any) -> ImageRequest:
    _check_choices(fields)
    model = fields.get("model") or DEFAULT_IMAGE_MODEL
    if not isinstance(model, str):
        raise InvalidRequestError("`model` must be a string.", param="model")
    return ImageRequest(
        operation=operation,
        model=model,
        fields={key: value for key, value in fields.items() if key != "model"},
        n=_count(fields.get("n")),
        size=fields.get("size"),
        quality=fields.get("quality"),
        response_format=fields.get("response_format"),
        **uploads,
    )


def parse_generation(data: dict[str, Any]) -> ImageRequest:
    """A /v1/images/generations body; 400 naming the field at fault."""
    _prompt(data)
    return _request("generations", data)


# -- uploads ---------------------------------------------------------------------


def image_dimensions(content: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a PNG, JPEG or WebP image; None for anything else."""
    if content.startswith(b"\x89PNG\r\n\x1a\n") and content[12:16] == b"IHDR":
        width, height = struct.unpack(">II", content[16:24])
        return "png", width, height
    if content.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(content)
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        chunk = content[12:16]
        if chunk == b"VP8X" and len(content) >= 30:
            width = int.from_bytes(content[24:27], "little") + 1
            return "webp", width, int.from_bytes(content[27:30], "little") + 1
        if chunk == b"VP8 " and len(content) >= 30:
            width, height = struct.unpack("<HH", content[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and len(content) >= 25:
            bits = int.from_bytes(content[21:25], "little")
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg_dimensions(content: bytes) -> tuple[str, int, int] | None:
    at = 2
    while at + 9 < len(content):
        if content[at] != 0xFF:
            return None
        marker = content[at + 1]
        length = int.from_bytes(content[at + 2 : at + 4], "big")
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", content[at + 5 : at + 9])
            return "jpeg", width, height
        at += 2 + length
    return None


async def _upload(value: Any, name: str) -> tuple[UploadedFile, tuple[str, int, int]]:
    if not isinstance(value, UploadFile):
        raise InvalidRequestError(f"`{name}` must be a file upload.", param=name)
    content = await value.read(MAX_IMAGE_BYTES + 1)
    if len(content) > MAX_IMAGE_BYTES:
        raise PayloadTooLargeError(
            f"`{name}` is larger than the limit of {MAX_IMAGE_BYTES} bytes.", param=name
        )
    dimensions = image_dimensions(content)
    if dimensions is None:
        raise InvalidRequestError(
            f"`{name}` must be a PNG, JPEG or WebP image.", param=name, code="invalid_image"
        )
    content_type = f"image/{dimensions[0]}"
    return UploadedFile(
        content, value.filename or f"{name}.{dimensions[0]}", content_type
    ), dimensions


def _fields(form: FormData) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key not in ("image", "image[]", "mask"):
            fields[key] = value
    return fields


async def parse_upload(form: FormData, operation: str) -> ImageRequest:
    """A /v1/images/edits or /variations form; 400 naming the field at fault."""
    fields = _fields(form)
    field = "image[]" if form.getlist("image[]") else "image"
    values = form.getlist(field)
    if not values:
        raise InvalidRequestError("`image` is required: upload one or more images.", param="image")
    if len(values) > (MAX_EDIT_IMAGES if operation == "edits" else 1):
        raise InvalidRequestError(
            f"Too many images: at most {MAX_EDIT_IMAGES if operation == 'edits' else 1}.",
            param="image",
        )
    if operation == "edits":
        _prompt(fields)
    uploads = [await _upload(value, "image") for value in values]
    mask: UploadedFile | None = None
    if form.get("mask") is not None:
        if operation != "edits":
            raise InvalidRequestError("A variation takes no `mask`.", param="mask")
        mask, (kind, width, height) = await _upload(form.get("mask"), "mask")
        _, image_width, image_height = uploads[0][1]
        if kind != "png":
            raise InvalidRequestError("`mask` must be a PNG image.", param="mask")
        if (width, height) != (image_width, image_height):
            raise InvalidRequestError(
                f"`mask` is {width}x{height}; it must be the size of the image "
                f"({image_width}x{image_height}).",
                param="mask",
                code="invalid_image",
            )
    return _request(
        operation,
        fields,
        images=tuple(upload for upload, _ in uploads),
        mask=mask,
        image_field=field,
    )
