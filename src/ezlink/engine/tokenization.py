"""The model's own tokenizer: counts tokens and prepares inputs for the queue.

A text far over the limit is refused from a prefix of it (``encode_bounded``),
not from its whole: a 16 MB input took 13 s of one core to tokenize before
its 400. A cheap bound from the length alone (N characters make at least
N / longest-vocabulary-entry tokens) would be wrong for WordPiece: a word
over 100 characters is one ``[UNK]`` and whitespace makes no token, so
``"a" * 10**6`` is 3 tokens and a megabyte of spaces 2, both valid inputs
such a bound would refuse. A prefix cut where the pre-tokenizer always
splits (before whitespace; for BERT also after punctuation and CJK
characters) tokenizes to the first tokens of the whole text, so a prefix
with more tokens than the limit proves the text is over it, and one within
the limit grows until it is the whole text: exact at the boundary.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, NamedTuple

from tokenizers import Tokenizer

# Pre-tokenizers and normalizers that split or change text only locally,
# so the prefix rule above holds; any other tokenizer is tokenized whole.
WORD_SPLITTING = {"BertPreTokenizer", "ByteLevel", "Whitespace", "WhitespaceSplit", "Metaspace"}
LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents"}
# Where a cut is safe for any word-splitting pre-tokenizer: before whitespace
# that follows a non-space (a run of spaces is one pre-token in ByteLevel).
# Only what every one of them splits on: BERT removes other control
# characters (\x0b, \x1c) and keeps \u2028 in words; Metaspace splits on " ".
_SPACE = r"[ \t\n\r\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
_BEFORE_SPACE = rf"(?<=\S)(?={_SPACE})"
_BEFORE_BLANK = r"(?<=\S)(?= )"
# ...and for BERT's: after ASCII punctuation, and (where the normalizer
# spaces them out, handle_chinese_chars) a CJK character: words of their own.
_BERT_PUNCTUATION = r"!-/:-@\[-`{-~"
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002fa1f"
# A prefix starts at this many characters per token of the limit (English
# runs 4-6), and doubles until it settles the question.
CHARS_PER_TOKEN_START = 8


class Encoded(NamedTuple):
    """One input's ids; `over`: they are a prefix's, already past the limit."""

    ids: list[int]
    over: bool


def _types(component: Any) -> list[str]:
    """The component's type, or its members' for a Sequence."""
    if component is None:
        return []
    if component.get("type") == "Sequence":
        members = component.get("pretokenizers") or component.get("normalizers") or []
        return [name for member in members for name in _types(member)]
    return [str(component.get("type"))]


def cut_pattern(spec: dict[str, Any]) -> re.Pattern[str] | None:
    """Where a prefix of a text may be cut for this tokenizer (tokenizer.json), if anywhere."""
    splitters = _types(spec.get("pre_tokenizer"))
    normalizers = _types(spec.get("normalizer"))
    if not splitters or not set(splitters) <= WORD_SPLITTING:
        return None
    if not set(normalizers) <= LOCAL_NORMALIZERS:
        return None
    if "Metaspace" in splitters:
        return re.compile(_BEFORE_BLANK)
    if splitters == ["BertPreTokenizer"]:
        normalizer = spec.get("normalizer") or {}
        words = _BERT_PUNCTUATION + (_CJK if normalizer.get("handle_chinese_chars") else "")
        return re.compile(f"{_BEFORE_SPACE}|(?<=[{words}])(?=\\S)")
    return re.compile(_BEFORE_SPACE)


class ModelTokenizer:
    """Wraps a Hugging Face fast tokenizer with padding and truncation off.

    Shipped tokenizer.json files often pad and truncate to a fixed length;
    the engine pads per batch and decides on truncation itself.
    """

    def __init__(self, model_dir: Path, truncate_to: int | None = None) -> None:
        path = model_dir / "tokenizer.json"
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        if truncate_to is None:
            self._tokenizer.no_truncation()
        else:
            self._tokenizer.enable_truncation(max_length=truncate_to)
        self._cuts = cut_pattern(json.loads(path.read_text(encoding="utf-8")))

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids, special tokens included: what the model runs and what usage counts."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def encode_bounded(self, texts: list[str], max_tokens: int) -> list[Encoded]:
        """`encode`, but a text's work is bounded by `max_tokens`, not by its length.

        A text with more tokens comes back as the ids of a prefix that has
        more (`over`), unless truncation is on: then its ids are the
        truncated ones, the same as the whole text's.
        """
        start = CHARS_PER_TOKEN_START * (max_tokens + 2)
        short = [index for index, text in enumerate(texts) if len(text) <= start]
        out: list[Encoded | None] = [None] * len(texts)
        for index, ids in zip(short, self.encode([texts[i] for i in short]), strict=True):
            out[index] = Encoded(ids, over=len(ids) > max_tokens)
        for index, text in enumerate(texts):
            if out[index] is None:
                out[index] = self._encode_long(text, max_tokens, start)
        return [encoded for encoded in out if encoded is not None]

    def _encode_long(self, text: str, max_tokens: int, size: int) -> Encoded:
        while True:
            cut = self._cut_at_or_after(text, size)
            encoding = self._tokenizer.encode(text[:cut])
            if cut >= len(text) or encoding.overflowing:
                return Encoded(encoding.ids, over=len(encoding.ids) > max_tokens)
            if len(encoding.ids) > max_tokens:
                return Encoded(encoding.ids, over=True)
            size = 2 * cut

    def _cut_at_or_after(self, text: str, position: int) -> int:
        """The first safe cut at or after `position`; len(text) when there is none."""
        if self._cuts is None:
            return len(text)
        for match in self._cuts.finditer(text, max(1, position)):
            cut = match.start()
            # Never before a combining mark: normalizers join it to what precedes.
            if not unicodedata.combining(text[cut]) and not unicodedata.category(
                text[cut]
            ).startswith("M"):
                return cut
        return len(text)
