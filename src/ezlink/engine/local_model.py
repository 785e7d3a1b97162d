"""A model served in this process: tokenize, check limits, queue, post-process."""

from __future__ import annotations

import asyncio
import logging

from ezlink.backends.base import EmbeddingBackend
from ezlink.backends.model_files import ModelFiles, locate_model, read_model_files
from ezlink.config import LocalModelConfig, RequestLimitsConfig
from ezlink.engine.batcher import Batcher
from ezlink.engine.rules import (
    check_dimensions,
    check_input_tokens,
    check_token_limits,
    decode_token_inputs,
    reduce_dimensions,
)
from ezlink.engine.tokenization import ModelTokenizer
from ezlink.engine.types import EMBEDDINGS, EmbedRequest, EmbedResult, card_of
from ezlink.errors import InvalidRequestError

logger = logging.getLogger(__name__)


def load_backend(config: LocalModelConfig, files: ModelFiles) -> EmbeddingBackend:
    """The runtime the config asks for; `auto` picks the fastest for the device.

    Measured (bench/README.md): on CPU, ONNX Runtime with one single-threaded
    run per core beats torch by about 2x; on CUDA, torch in fp16.
    """
    from ezlink.backends.runtime import choose_runtime

    runtime, device = choose_runtime(config.runtime, config.device)
    if runtime == "onnx":
        from ezlink.backends.onnx_backend import OnnxBackend

        try:
            return OnnxBackend(files)
        except Exception:
            if config.runtime == "onnx":
                raise
            # `auto` still serves, only slower, when a model does not export.
            logger.exception("ONNX export of %s failed; serving it with torch", config.id)
    from ezlink.backends.torch_backend import TorchBackend

    return TorchBackend(files, device=device)


# An input over the limit is counted exactly, for the 400's message, up to
# this many characters (about 70 ms of tokenizing); a longer one is refused
# with the count of the prefix that proved it over ("at least N").
EXACT_COUNT_MAX_CHARS = 65536

# Characters (or token ids) up to which a request is tokenized on the event
# loop: about 0.2 ms of work, as much as the hop to a thread costs.
INLINE_TOKENIZE_MAX = 1024


def request_size(request: EmbedRequest) -> int:
    """Characters of text, or token ids, in the request: what tokenizing it costs."""
    if request.texts is not None:
        return sum(len(text) for text in request.texts)
    return sum(len(ids) for ids in request.token_ids or [])


class LocalModel:
    """Serves one LocalModelConfig."""

    def __init__(self, config: LocalModelConfig, limits: RequestLimitsConfig) -> None:
        self.config = config
        self.limits = limits
        self.files = read_model_files(locate_model(config.path, config.package))
        self.max_input_tokens = min(
            config.max_input_tokens or self.files.max_seq_length, limits.max_input_tokens
        )
        self.card = card_of(
            config,
            frozenset({EMBEDDINGS}),
            dimension=self.files.dimension,
        )
        self.tokenizer = ModelTokenizer(
            self.files.directory, truncate_to=self.max_input_tokens if config.truncate else None
        )
        self.backend: EmbeddingBackend | None = None
        self.batcher: Batcher | None = None

    async def start(self) -> None:
        """Load the weights (off the event loop) and start the workers."""
        backend = await asyncio.to_thread(load_backend, self.config, self.files)
        workers = self.config.batching.workers or backend.suggested_workers()
        self.backend = backend
        self.batcher = Batcher(
            backend.embed, backend.dimension, self.config.batching, workers, backend.device
        )
        await self.batcher.start()
        logger.info("model %s ready (%s, %d dims)", self.config.id, backend.name, backend.dimension)

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        if self.backend is not None:
            self.backend.close()

    def texts_of(self, request: EmbedRequest) -> list[str]:
        """The texts to embed: token ids decoded, the configured prefix added."""
        if request.texts is not None:
            texts = request.texts
        else:
            assert request.token_ids is not None
            texts = decode_token_inputs(request.token_ids)
        prefix = (
            self.config.query_prefix
            if request.input_type == "query"
            else self.config.document_prefix
        )
        return [prefix + text for text in texts] if prefix else texts

    def tokenize(self, request: EmbedRequest) -> list[list[int]]:
        """The model's own token ids per input, with the per-input and request limits applied.

        An input far over the limit is refused from a prefix of it
        (`encode_bounded`): its cost is bounded by the limit, not its length.
        """
        texts = self.texts_of(request)
        encoded = self.tokenizer.encode_bounded(texts, self.max_input_tokens)
        for index, (ids, over) in enumerate(encoded):
            if over:
                self._refuse_input(index, texts[index], len(ids))
        sequences = [ids for ids, _ in encoded]
        check_token_limits(
            [len(ids) for ids in sequences], self.max_input_tokens, self.limits.max_request_tokens
        )
        return sequences

    def _refuse_input(self, index: int, text: str, at_least: int) -> None:
        """400 for an input over the limit: its exact count where counting is cheap."""
        if len(text) <= EXACT_COUNT_MAX_CHARS:
            count = len(self.tokenizer.encode([text])[0])
            check_input_tokens(count, index, self.max_input_tokens)
        raise InvalidRequestError(
            f"Input {index} has at least {at_least} tokens, more than this "
            f"model's limit of {self.max_input_tokens} tokens per input. Shorten the input.",
            param="input",
            code="context_length_exceeded",
        )

    def check_room(self) -> None:
        """Raise OverloadedError (503) when this model's queue is full."""
        if self.batcher is not None:
            self.batcher.check_room()

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        if self.batcher is None:
            raise RuntimeError("model not started")
        check_dimensions(
            request.dimensions,
            self.files.dimension,
            model=self.config.id,
            allowed=self.config.allow_dimensions,
        )
        # Off the event loop: a 16 MiB input takes seconds to tokenize, and every
        # other request would wait on it (the tokenizer releases the GIL). A
        # small request tokenizes in tens of microseconds, less than the hop to
        # a thread costs (and far less when the cores are busy), so it stays.
        if request_size(request) <= INLINE_TOKENIZE_MAX:
            sequences = self.tokenize(request)
        else:
            sequences = await asyncio.to_thread(self.tokenize, request)
        vectors = await self.batcher.embed(sequences)
        return EmbedResult(
            vectors=reduce_dimensions(vectors, request.dimensions, self.config.normalize),
            prompt_tokens=sum(len(ids) for ids in sequences),
        )
