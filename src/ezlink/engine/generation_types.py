"""What the API hands a text-generation model and what it gets back.

Provider-neutral: a local llama.cpp model, an OpenAI-compatible upstream and
Anthropic's Messages API all answer a ``GenerationRequest`` with a
``Generation``: an async stream of ``Delta`` pieces whose ``usage`` is final
once the stream ends, or once it is closed early (then it counts what was
produced until then). The API renders the pieces as chat completion chunks,
legacy completion chunks, or one whole response object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

GenerationKind = Literal["chat", "completion"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


@dataclass(frozen=True)
class SamplingParams:
    """The sampling fields of a request, validated; None means the model's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    # response_format {"type": "json_object"}: the output must be one JSON object.
    json_object: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    """A validated chat or legacy completion request.

    ``body`` is the client's JSON object as sent: an OpenAI-kind upstream gets
    it with only the model name replaced (and usage asked for), so that fields
    ezlink does not know still reach the provider.
    """

    kind: GenerationKind
    model: str
    body: dict[str, Any]
    # Chat: OpenAI message objects (roles and content shapes checked).
    messages: tuple[dict[str, Any], ...] = ()
    # Completion: the prompt text.
    prompt: str | None = None
    sampling: SamplingParams = SamplingParams()
    n: int = 1
    stream: bool = False
    # stream_options.include_usage: the client wants the usage chunk.
    include_usage: bool = False
    tools: tuple[dict[str, Any], ...] = ()
    user: str | None = None

    @property
    def uses_tools(self) -> bool:
        return bool(self.tools) or "functions" in self.body


@dataclass(frozen=True)
class Delta:
    """One piece of a generation for one choice: text, tool calls, or its end."""

    choice: int = 0
    content: str | None = None
    role: str | None = None
    # OpenAI's delta.tool_calls items, as the provider (or translation) gave them.
    tool_calls: tuple[dict[str, Any], ...] = ()
    reasoning_content: str | None = None
    # OpenAI's chunk logprobs object for this piece ({"content": [...]}).
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


@dataclass
class Usage:
    """Tokens of one request, and who counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # True when ezlink counted (the provider gave none, or the stream was cut).
    counted_by_ezlink: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            body["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            body["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return body


class Generation(Protocol):
    """One running generation.

    Iterate it for its deltas. ``usage`` is final when iteration ends, and
    after ``aclose()`` (the client left): then it counts what was produced.
    ``aclose()`` stops the work at once: a local model stops within one token,
    an upstream call has its connection closed.
    """

    usage: Usage

    @property
    def served_model(self) -> str | None:
        """What the provider called itself in its answer, when it said."""

    @property
    def response(self) -> dict[str, Any] | None:
        """A relayed non-streamed answer: the provider's whole response object,
        relayed (with the public model name) so that fields the deltas cannot
        carry (system_fingerprint, annotations, ...) reach the client. None
        for local models and for streams."""

    def __aiter__(self) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...


@dataclass
class CollectedChoice:
    """One choice of a whole (non-streamed) answer, gathered from its deltas."""

    index: int
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    reasoning_content: str = ""
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
