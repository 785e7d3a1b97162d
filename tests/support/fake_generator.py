"""A deterministic text generator behind the model protocol, for route tests.

It answers every request with the words of its last user message (or its
prompt), one piece per word, counting one token per word; a request whose
text contains "fail-after-first" fails after its first piece, as an upstream
that drops mid-stream does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ezlink.engine.generation_types import Delta, GenerationRequest, Usage
from ezlink.engine.types import CHAT, COMPLETIONS
from ezlink.errors import UpstreamError
from tests.support.stub_models import StubModel


def text_of(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    for message in reversed(request.messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


@dataclass
class EchoGeneration:
    request: GenerationRequest
    usage: Usage = field(default_factory=Usage)
    served_model: str | None = "echo"
    response: dict[str, Any] | None = None
    closed: bool = False

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[Delta]:
        words = text_of(self.request).split()
        self.usage.prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in self.request.messages) or len(words)
        limit = self.request.sampling.max_tokens or len(words)
        for choice in range(self.request.n):
            if self.request.kind == "chat":
                yield Delta(choice=choice, role="assistant", content="")
            for index, word in enumerate(words[:limit]):
                if self.closed:
                    return
                self.usage.completion_tokens += 1
                yield Delta(choice=choice, content=word if index == 0 else " " + word)
                if "fail-after-first" in words:
                    raise UpstreamError("The upstream dropped the connection.")
            reason = "length" if limit < len(words) else "stop"
            yield Delta(choice=choice, finish_reason=reason)

    async def aclose(self) -> None:
        self.closed = True


class EchoGenerator(StubModel):
    """Serves `echo` for chat and completions."""

    def __init__(self, name: str = "echo") -> None:
        super().__init__(name, frozenset({CHAT, COMPLETIONS}))
        self.generations: list[EchoGeneration] = []

    def generate(self, request: GenerationRequest) -> EchoGeneration:
        generation = EchoGeneration(request)
        self.generations.append(generation)
        return generation
