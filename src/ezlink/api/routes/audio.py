"""POST /v1/audio/speech, /v1/audio/transcriptions, /v1/audio/translations.

Speech streams: the audio is sent as the model makes it (a local voice
sentence by sentence, an upstream's as it arrives), after the first piece,
so that an error before it is still an ordinary error response. It is
metered per character of input, settled when the stream ends, however it
ends. Transcriptions and translations are metered by the seconds of audio
ezlink decoded from the upload, never the client's claim.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.billing import Bound
from ezlink.accounts.service import TokenCounts, Units
from ezlink.api.auth import Principal, require_principal
from ezlink.api.metered import MeteredCall
from ezlink.api.protocol.audio import (
    SPEECH_CONTENT_TYPES,
    parse_speech,
    parse_transcription,
    read_multipart,
    render_transcription,
)
from ezlink.api.streaming import AudioStream, SettledStreamingResponse
from ezlink.engine.media_types import MediaReply, Speaker, Transcriber
from ezlink.engine.types import SPEECH, TRANSCRIPTION, TRANSLATION, Capability

router = APIRouter()

# The multipart routes, whose uploads may exceed server.limits.max_body_bytes.
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")


@router.post("/v1/audio/speech")
async def create_speech(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    async with MeteredCall(request, principal, SPEECH) as call:
        name, speech = parse_speech(await call.json_body())
        call.counted(1)
        model = cast(Speaker, call.pick(name))
        await call.admit(bound=Bound(units=Units(characters=len(speech.input))))
        chunks = await call.run(model.speak(speech))
        # Billed per character asked for, once the audio has started.
        stream = AudioStream(call, chunks, Units(characters=len(speech.input)))
        await stream.start()
        return SettledStreamingResponse(
            stream,
            media_type=SPEECH_CONTENT_TYPES[speech.response_format],
            headers={**call.headers, "Cache-Control": "no-cache"},
        )


async def transcribe(request: Request, principal: Principal, family: Capability) -> Response:
    async with MeteredCall(request, principal, family) as call:
        form = await read_multipart(request)
        model_field = form.get("model")
        call.body = {"model": model_field} if isinstance(model_field, str) else {}
        name, parsed = await parse_transcription(form, translation=family == TRANSLATION)
        call.counted(1)
        model = cast(Transcriber, call.pick(name))
        await call.admit()
        work = model.translate(parsed) if family == TRANSLATION else model.transcribe(parsed)
        result = await call.run(work)
        if isinstance(result, MediaReply):
            content, media_type, seconds = result.content, result.media_type, result.audio_seconds
            tokens = TokenCounts(*result.tokens) if result.tokens else None
        else:
            task = "translate" if family == TRANSLATION else "transcribe"
            content, media_type = render_transcription(result, parsed, task)
            seconds, tokens = result.duration, None
        call.succeeded(tokens, units=Units(audio_seconds=round(seconds, 3)))
    return Response(content, media_type=media_type, headers=call.headers)


@router.post("/v1/audio/transcriptions")
async def create_transcription(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    return await transcribe(request, principal, TRANSCRIPTION)


@router.post("/v1/audio/translations")
async def create_translation(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    return await transcribe(request, principal, TRANSLATION)
