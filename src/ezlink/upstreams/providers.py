"""The generation clients of upstreams: one small protocol, and the one place
that picks the client for an upstream's ``kind``.

A provider client turns a ``GenerationRequest`` into calls to its API and
hands back a ``Generation`` (``engine.generation_types``): deltas, then usage.
It shares the upstream's pooled ``UpstreamConnection`` (key, headers, slots)
and knows nothing of routing; retries, fallback and the circuit breaker are
``upstreams.generation_routing``'s. Adding a provider (Anthropic's Messages
API) is a module with its client, and one line in ``GENERATION_CLIENTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ezlink.engine.generation_types import Generation, GenerationRequest
from ezlink.upstreams.anthropic import AnthropicClient
from ezlink.upstreams.http import UpstreamConnection
from ezlink.upstreams.openai_chat import OpenAIChatClient


class GenerationClient(Protocol):
    """Chat and legacy completions on one upstream.

    Example::

        client = generation_client(connection)
        await client.open()
        generation = client.generate(request, "gpt-4o-mini")
        async for delta in generation:  # the call is made here, lazily
            ...
        generation.usage  # final now (or after generation.aclose())
        await client.close()

    Before the first delta, the first ``__anext__`` raises the call's error:
    ``UpstreamCallFailed`` (or its subclasses) where another try or another
    route may do better, a 4xx ``EzlinkError`` where the request is at fault.
    After it, a failure is raised as ``UpstreamCallFailed`` from iteration.
    """

    @property
    def name(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def generate(self, request: GenerationRequest, upstream_model: str) -> Generation: ...


# UpstreamConfig.kind → the client that speaks that provider's API.
GENERATION_CLIENTS: dict[str, Callable[[UpstreamConnection], GenerationClient]] = {
    "openai": OpenAIChatClient,
    "other": OpenAIChatClient,
    "anthropic": AnthropicClient,
}


def generation_client(connection: UpstreamConnection) -> GenerationClient:
    """The generation client for the upstream's kind, calling through `connection`."""
    return GENERATION_CLIENTS[connection.config.kind](connection)
