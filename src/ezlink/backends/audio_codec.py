"""Audio in and out: decode uploads for Whisper, encode speech in OpenAI's formats.

Both directions go through PyAV (FFmpeg's libraries, a dependency of
faster-whisper), except wav and pcm, which are written here directly.

Decoding takes any file FFmpeg reads (mp3, mp4/m4a, ogg/opus, webm, wav,
flac, ...) to mono float32 at 16 kHz, what Whisper wants. A file that is not
audio, or that breaks off before the end its header declares, raises
``AudioDecodeError`` (a 400 with ``param: "file"``), never anything else.

Encoding takes 16-bit mono PCM chunks as a voice produces them and returns
the bytes of one of OpenAI's speech ``response_format`` values as soon as
the codec has them, so a response can stream:

* ``wav``: 16-bit PCM at the voice's own rate. A stream cannot know its
  length when it sends the header, so the RIFF and data sizes are
  0xFFFFFFFF, as OpenAI's streamed wav does; readers take "to the end".
  Encoded whole (``encode_speech``) the sizes are exact.
* ``pcm``: raw 16-bit little-endian mono at 24 kHz, no header, as OpenAI
  documents it; the voice's 22.05 kHz is resampled (FFmpeg's swresample).
* ``mp3`` (libmp3lame), ``aac`` (ADTS), ``flac``, ``opus`` (Ogg Opus, at
  24 kHz since Opus takes no 22.05 kHz): FFmpeg encoders at their default
  bit rates. Streamed, the muxer cannot seek back to fill in totals (mp3's
  Info frame, FLAC's sample count); both are optional and players cope.
"""

from __future__ import annotations

import contextlib
import io
import struct
from fractions import Fraction
from pathlib import Path
from typing import Literal, get_args

import av
import numpy as np
import numpy.typing as npt

from ezlink.errors import InvalidRequestError

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_FORMATS: tuple[SpeechFormat, ...] = get_args(SpeechFormat)

# What OpenAI sends as Content-Type for each format.
CONTENT_TYPES: dict[SpeechFormat, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

PCM_SAMPLE_RATE = 24_000
WHISPER_SAMPLE_RATE = 16_000

# (container format, codec, sample rate or None for the voice's own).
_PYAV_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "aac": ("adts", "aac", None),
    "flac": ("flac", "flac", None),
    "opus": ("ogg", "libopus", 24_000),
}

# Ogg holds packets back until a page spans a second by default; a page per
# 100 ms lets a stream's audio out as it is made (about 3% more bytes).
_MUXER_OPTIONS: dict[str, dict[str, str]] = {"opus": {"page_duration": "100000"}}

# A file whose header promises this much more audio than it holds is taken
# as cut off: both conditions, so that a duration estimated from the bit
# rate (mp3 without an Info frame) does not fail a whole file.
_TRUNCATED_FRACTION = 0.9
_TRUNCATED_SECONDS = 0.5

Pcm16 = npt.NDArray[np.int16]
Samples = npt.NDArray[np.float32]


class AudioDecodeError(InvalidRequestError):
    """The uploaded file is not audio FFmpeg can read, or is cut off (400)."""

    code = "invalid_value"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="file")


# -- decoding -----------------------------------------------------------------


def decode_audio(
    source: bytes | str | Path,
    *,
    sample_rate: int = WHISPER_SAMPLE_RATE,
    max_seconds: float | None = None,
) -> Samples:
    """Decode a file (bytes or a path) to mono float32 at `sample_rate`.

    Raises AudioDecodeError for anything that is not complete, readable
    audio, or that lasts longer than `max_seconds`.
    """
    file: io.BytesIO | str = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("The file has no audio stream.")
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            samples = _decode_stream(container, stream, sample_rate, max_seconds)
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(
            "Audio file might be corrupted or unsupported: FFmpeg cannot decode it."
        ) from exc
    if samples.size == 0:
        raise AudioDecodeError("The file holds no audio.")
    seconds = samples.size / sample_rate
    if (
        declared is not None
        and seconds < declared * _TRUNCATED_FRACTION
        and declared - seconds > _TRUNCATED_SECONDS
    ):
        raise AudioDecodeError(
            f"The audio file is truncated: its header declares {declared:.1f} s, "
            f"it holds {seconds:.1f} s."
        )
    return samples


def _decode_stream(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    sample_rate: int,
    max_seconds: float | None,
) -> Samples:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    chunks: list[Samples] = []
    total = 0
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            chunks.append(chunk)
            total += chunk.size
        if limit is not None and total > limit:
            raise AudioDecodeError(f"The audio is longer than {max_seconds:g} seconds.")
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks)


def _declared_seconds(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> float | None:
    """The duration the file's header states, if it states one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


# -- encoding -----------------------------------------------------------------


def to_pcm16(samples: Samples) -> Pcm16:
    """Float samples in [-1, 1] as 16-bit PCM (clipped)."""
    pcm: Pcm16 = np.clip(samples * 32767.0, -32768, 32767).astype(np.int16)
    return pcm


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte header for 16-bit mono PCM; None: length unknown (streaming)."""
    data_size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff_size = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class _Sink:
    """A write-only file for PyAV: what the muxer writes, taken as it comes.

    It has no `seek`, so FFmpeg treats it as a stream and never goes back to
    rewrite a header that has already been sent.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class SpeechEncoder:
    """Encodes 16-bit mono PCM, chunk by chunk, into one response format.

    `encode` returns whatever encoded bytes are ready (possibly none: codecs
    hold back a frame or two); `finish` flushes the rest. Not thread-safe:
    one encoder per response.
    """

    def __init__(self, response_format: SpeechFormat, sample_rate: int) -> None:
        if response_format not in SPEECH_FORMATS:
            raise ValueError(f"unknown speech format {response_format!r}")
        self.response_format = response_format
        self.sample_rate = sample_rate
        self._header_sent = False
        self._resampler: av.AudioResampler | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        self._sink = _Sink()
        self._pts = 0
        if response_format == "pcm" and sample_rate != PCM_SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=PCM_SAMPLE_RATE)
        elif response_format in _PYAV_FORMATS:
            self._container = av.open(
                self._sink,
                mode="w",
                format=_PYAV_FORMATS[response_format][0],
                options=_MUXER_OPTIONS.get(response_format, {}),
            )
            self._stream = _add_audio_stream(self._container, response_format, sample_rate)

    def encode(self, pcm: Pcm16) -> bytes:
        """Encoded bytes for the next chunk of samples (may be empty)."""
        if self.response_format == "wav":
            return self._wav_header_once() + pcm.astype("<i2", copy=False).tobytes()
        if self.response_format == "pcm":
            if self._resampler is None:
                return pcm.astype("<i2", copy=False).tobytes()
            return self._resample_pcm(self._frame(pcm))
        return self._mux(self._frame(pcm))

    def finish(self) -> bytes:
        """The bytes the codec still holds; the encoder is done after this."""
        if self.response_format == "wav":
            return self._wav_header_once()
        if self.response_format == "pcm":
            return b"" if self._resampler is None else self._resample_pcm(None)
        assert self._container is not None
        tail = self._mux(None)
        self._container.close()
        return tail + self._sink.take()

    def close(self) -> None:
        """Release the codec without flushing (the client went away)."""
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError):
                self._container.close()
            self._container = None

    def _wav_header_once(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return wav_header(self.sample_rate, None)

    def _frame(self, pcm: Pcm16) -> av.AudioFrame:
        frame = _pcm_frame(pcm, self.sample_rate, self._pts)
        self._pts += pcm.size
        return frame

    def _resample_pcm(self, frame: av.AudioFrame | None) -> bytes:
        assert self._resampler is not None
        return b"".join(
            out.to_ndarray().astype("<i2", copy=False).tobytes()
            for out in self._resampler.resample(frame)
        )

    def _mux(self, frame: av.AudioFrame | None) -> bytes:
        assert self._container is not None and self._stream is not None
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()


def encode_speech(pcm: Pcm16, sample_rate: int, response_format: SpeechFormat) -> bytes:
    """One whole file, with the totals a stream cannot carry.

    A wav gets exact sizes; mp3 its Info frame (duration, for seeking) and
    FLAC its sample count, since the muxer may seek back over a whole file.
    """
    if response_format == "wav":
        data = pcm.astype("<i2", copy=False).tobytes()
        return wav_header(sample_rate, len(data)) + data
    if response_format == "pcm":
        encoder = SpeechEncoder(response_format, sample_rate)
        return encoder.encode(pcm) + encoder.finish()
    file = io.BytesIO()
    with av.open(file, mode="w", format=_PYAV_FORMATS[response_format][0]) as container:
        stream = _add_audio_stream(container, response_format, sample_rate)
        for packet in stream.encode(_pcm_frame(pcm, sample_rate, 0)):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return file.getvalue()


def _add_audio_stream(
    container: av.container.OutputContainer, response_format: SpeechFormat, sample_rate: int
) -> av.audio.stream.AudioStream:
    """The format's encoder, mono, at its rate (or the input's where it takes any)."""
    _, codec, rate = _PYAV_FORMATS[response_format]
    stream = container.add_stream(codec, rate=rate or sample_rate)
    assert isinstance(stream, av.audio.stream.AudioStream)
    stream.layout = "mono"
    return stream


def _pcm_frame(pcm: Pcm16, sample_rate: int, pts: int) -> av.AudioFrame:
    """A PyAV frame of 16-bit mono samples starting at sample `pts`."""
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = Fraction(1, sample_rate)
    return frame
