"""A GGUF chat model served in this process: check the request, render and
count the prompt, run it on the scheduler, hand back OpenAI-like deltas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ezlink.backends.llama_cpp import DecodeOptions, LlamaRuntime, Step, locate_gguf
from ezlink.config import GgufModelConfig
from ezlink.engine.generation import GenerationScheduler, SequenceStream
from ezlink.engine.generation_types import Delta, GenerationRequest, Usage
from ezlink.engine.types import CHAT, COMPLETIONS, card_of
from ezlink.errors import InvalidRequestError

logger = logging.getLogger(__name__)

# Characters of prompt up to which it is rendered and tokenized on the event
# loop (well under a millisecond); longer ones go to a thread.
INLINE_TOKENIZE_MAX = 8192

# Fields that ask for tool calls; `"none"` (and parallel_tool_calls) ask for nothing.
TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call")
UNSUPPORTED_PARTS = {"image_url", "input_audio", "file"}


def layout(config: GgufModelConfig) -> tuple[int, int]:
    """(contexts, threads per context): threads 0 shares the cores among the contexts."""
    threads = config.threads or max(1, (os.cpu_count() or 1) // config.contexts)
    return config.contexts, threads


@dataclass(frozen=True)
class _Plan:
    """What a checked request runs: the prompt's tokens and each choice's options."""

    prompt_ids: list[int]
    options: tuple[DecodeOptions, ...]


def _text_content(message: dict[str, Any], index: int) -> dict[str, Any]:
    """The message with text-only content parts joined; anything else is a 400."""
    content = message.get("content")
    if message.get("tool_calls") or message.get("role") in ("tool", "function"):
        raise InvalidRequestError(
            f"messages[{index}]: this model does not support tool calls.", param="messages"
        )
    if not isinstance(content, list):
        return message
    texts: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in UNSUPPORTED_PARTS:
            raise InvalidRequestError(
                f"messages[{index}]: this model takes text only, not `{kind}` content.",
                param="messages",
            )
        else:
            raise InvalidRequestError(
                f"messages[{index}]: unknown content part type `{kind}`.", param="messages"
            )
    return {**message, "content": "".join(texts)}


class LocalGenerator:
    """Serves one GgufModelConfig: ``contexts`` llama.cpp contexts, each
    running one sequence at a time with ``threads`` threads."""

    def __init__(self, config: GgufModelConfig) -> None:
        self.config = config
        self.path = locate_gguf(config.path, config.package)
        self.contexts, self.threads = layout(config)
        self.card = card_of(
            config,
            frozenset({CHAT, COMPLETIONS}),
            max_output_tokens=config.max_tokens or config.default_max_tokens,
            details={"format": "gguf", "file": self.path.name, "context_length": config.n_ctx},
        )
        self.runtimes: list[LlamaRuntime] = []
        self.scheduler: GenerationScheduler[LlamaRuntime] | None = None

    @property
    def runtime(self) -> LlamaRuntime:
        """The first context: its tokenizer and template serve every request."""
        if not self.runtimes:
            raise RuntimeError("model not started")
        return self.runtimes[0]

    @property
    def n_ctx(self) -> int:
        return self.runtime.n_ctx

    def threads_now(self) -> int:
        """Threads for a sequence's next token: every core while it runs alone
        (prefill and decoding both scale with threads), its share while
        others run (contexts that would fight over cores stall each other).
        Only with `threads: 0` (automatic); a set `threads` is kept."""
        if self.config.threads or self.scheduler is None or self.scheduler.in_flight > 1:
            return self.threads
        return max(self.threads, os.cpu_count() or 1)

    async def start(self) -> None:
        """Load the contexts (off the event loop) and start the scheduler."""

        def load() -> list[LlamaRuntime]:
            return [
                LlamaRuntime(self.path, n_ctx=self.config.n_ctx, n_threads=self.threads)
                for _ in range(self.contexts)
            ]

        self.runtimes = await asyncio.to_thread(load)
        self.scheduler = GenerationScheduler(
            self.runtimes, max_queue=self.config.max_queue, name=self.config.id
        )
        await self.scheduler.start()
        logger.info(
            "model %s ready (llama.cpp, %d x %d threads, context %d)",
            self.config.id,
            self.contexts,
            self.threads,
            self.n_ctx,
        )

    async def stop(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        for runtime in self.runtimes:
            runtime.close()
        self.runtimes = []

    def check_room(self) -> None:
        """Raise OverloadedError (503) when this model's queue is full."""
        if self.scheduler is not None:
            self.scheduler.check_room()

    def generate(self, request: GenerationRequest) -> LocalGeneration:
        """Check the request (a 400 comes here, before any work) and return its
        generation; the prompt is counted here too unless it is long."""
        if self.scheduler is None:
            raise RuntimeError("model not started")
        self._check_fields(request)
        grammar = self._grammar(request)
        options = self._options(request, grammar)
        size = (
            len(request.prompt or "")
            if request.kind == "completion"
            else sum(len(str(m.get("content") or "")) for m in request.messages)
        )
        plan = self._plan(request, options) if size <= INLINE_TOKENIZE_MAX else None
        return LocalGeneration(self, request, options, plan)

    # -- checks (all before any work) -------------------------------------------

    def _check_fields(self, request: GenerationRequest) -> None:
        if request.uses_tools or any(
            request.body.get(name) not in (None, "none") for name in TOOL_FIELDS
        ):
            why = (
                "its chat template has no tool support"
                if not self.runtime.supports_tools
                else "ezlink does not parse tool calls from local models yet"
            )
            raise InvalidRequestError(
                f"The model `{request.model}` does not support tools: {why}.", param="tools"
            )
        if request.kind == "chat" and not self.runtime.chat_template:
            raise InvalidRequestError(
                f"The model `{request.model}` has no chat template; use /v1/completions.",
                param="messages",
            )

    def _grammar(self, request: GenerationRequest) -> str | None:
        """The GBNF grammar response_format asks for (json_object, json_schema)."""
        response_format = request.body.get("response_format")
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if request.sampling.json_object or kind == "json_object":
            return self.runtime.grammar_for_json()
        if kind == "json_schema":
            assert isinstance(response_format, dict)
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise InvalidRequestError(
                    "response_format.json_schema.schema must be a JSON schema object.",
                    param="response_format",
                )
            try:
                return self.runtime.grammar_for_json(schema)
            except Exception as exc:
                raise InvalidRequestError(
                    f"This JSON schema cannot be enforced by the model: {exc}",
                    param="response_format",
                ) from exc
        if kind not in (None, "text"):
            raise InvalidRequestError(
                f"response_format type `{kind}` is not supported by this model.",
                param="response_format",
            )
        return None

    def _options(self, request: GenerationRequest, grammar: str | None) -> tuple[DecodeOptions, ...]:
        """Each choice's sampling; choice i of a seeded request uses seed + i, so
        that n > 1 gives n different answers, reproducibly."""
        s = request.sampling
        max_tokens = s.max_tokens or self.config.default_max_tokens
        if self.config.max_tokens is not None:
            max_tokens = min(max_tokens, self.config.max_tokens)
        base = DecodeOptions(
            max_tokens=max_tokens,
            temperature=1.0 if s.temperature is None else s.temperature,
            top_p=1.0 if s.top_p is None else s.top_p,
            seed=s.seed,
            stop=s.stop,
            presence_penalty=s.presence_penalty or 0.0,
            frequency_penalty=s.frequency_penalty or 0.0,
            top_logprobs=(s.top_logprobs or 0) if s.logprobs else None,
            grammar=grammar,
        )
        return tuple(
            replace(base, seed=None if s.seed is None else s.seed + i) for i in range(request.n)
        )

    def _plan(self, request: GenerationRequest, options: tuple[DecodeOptions, ...]) -> _Plan:
        """The prompt's tokens, by the model's own template and tokenizer; a
        prompt that leaves no room in the context is a 400."""
        runtime = self.runtime
        if request.kind == "completion":
            ids, param = runtime.tokenize_prompt(request.prompt or ""), "prompt"
            if not ids:  # as create_completion: an empty prompt starts from BOS
                ids = [runtime.llama.token_bos()]
        else:
            messages = [_text_content(m, i) for i, m in enumerate(request.messages)]
            try:
                ids = runtime.tokenize_chat(messages)
            except Exception as exc:  # the template's raise_exception, or a type error
                raise InvalidRequestError(
                    f"The model's chat template rejected the messages: {exc}", param="messages"
                ) from exc
            param = "messages"
        if len(ids) >= runtime.n_ctx:
            raise InvalidRequestError(
                f"This model's maximum context length is {runtime.n_ctx} tokens. However, "
                f"your {param} resulted in {len(ids)} tokens. Please reduce the length "
                f"of the {param}.",
                param=param,
                code="context_length_exceeded",
            )
        return _Plan(ids, options)


def _logprob_entry(step: Step) -> dict[str, Any] | None:
    if step.logprob is None:
        return None
    lp = step.logprob
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.token_bytes),
        "top_logprobs": [
            {"token": token, "logprob": logprob, "bytes": list(data)}
            for token, data, logprob in lp.top
        ],
    }


def _decode_choices(
    plan: _Plan, threads: Callable[[], int]
) -> Callable[[LlamaRuntime, Callable[[], bool]], Iterator[tuple[int, Step]]]:
    """The work of a request on its slot: the choices one after another (the
    second reuses the prompt already in the context's KV cache)."""

    def work(runtime: LlamaRuntime, cancelled: Callable[[], bool]) -> Iterator[tuple[int, Step]]:
        for choice, options in enumerate(plan.options):
            for step in runtime.decode(plan.prompt_ids, options, cancelled, threads):
                yield choice, step

    return work


class LocalGeneration:
    """One request's generation: iterate it for deltas; ``aclose()`` stops it
    within one token. Usage is the model's own count of tokens."""

    def __init__(
        self,
        model: LocalGenerator,
        request: GenerationRequest,
        options: Sequence[DecodeOptions],
        plan: _Plan | None,
    ) -> None:
        self._model = model
        self._request = request
        self.response: dict[str, Any] | None = None
        self._options = tuple(options)
        self._plan = plan
        self.usage = Usage(
            prompt_tokens=len(plan.prompt_ids) if plan is not None else 0,
            counted_by_ezlink=False,
        )
        self.served_model: str | None = model.config.id
        self._stream: SequenceStream[tuple[int, Step]] | None = None
        self._deltas: AsyncIterator[Delta] | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Delta]:
        if self._deltas is None:
            self._deltas = self._run()
        return self._deltas

    async def aclose(self) -> None:
        self._closed = True
        if self._stream is not None:
            await self._stream.aclose()
        if self._deltas is not None:
            # RuntimeError: being iterated by another task; its stream is closed already.
            with contextlib.suppress(RuntimeError):
                await self._deltas.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[Delta]:
        if self._closed:
            return
        model, request = self._model, self._request
        plan = self._plan
        if plan is None:
            plan = await asyncio.to_thread(model._plan, request, self._options)
            self.usage.prompt_tokens = len(plan.prompt_ids)
        if self._closed:
            return
        assert model.scheduler is not None
        self._stream = model.scheduler.submit(_decode_choices(plan, model.threads_now))
        chat = request.kind == "chat"
        current = -1
        pending: list[dict[str, Any]] = []
        try:
            async for choice, step in self._stream:
                if choice != current:
                    current, pending = choice, []
                    if chat:
                        yield Delta(choice=choice, role="assistant", content="")
                if step.in_output:
                    self.usage.completion_tokens += 1
                entry = _logprob_entry(step)
                if entry is not None and step.in_output:
                    pending.append(entry)
                if step.text:
                    yield Delta(
                        choice=choice,
                        content=step.text,
                        logprobs={"content": pending} if entry is not None or pending else None,
                    )
                    pending = []
                if step.finish_reason is not None:
                    yield Delta(
                        choice=choice,
                        finish_reason=step.finish_reason,
                        logprobs={"content": pending} if pending else None,
                    )
        finally:
            await self._stream.aclose()
