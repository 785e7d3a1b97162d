"""Deterministic benchmark texts: short sentences and a mixed-length corpus.

Generated from a fixed seed rather than downloaded: the benchmark runs
offline and every run (and every server) sees the same inputs.
"""

from __future__ import annotations

import random

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "an",
    "be",
    "this",
    "which",
    "or",
    "had",
    "are",
    "not",
    "but",
    "one",
    "were",
    "all",
    "they",
    "their",
    "been",
    "has",
    "have",
    "more",
    "when",
    "who",
    "will",
    "would",
    "there",
    "can",
    "model",
    "server",
    "request",
    "vector",
    "search",
    "index",
    "query",
    "document",
    "cluster",
    "memory",
    "latency",
    "token",
    "network",
    "river",
    "mountain",
    "city",
    "history",
    "language",
    "music",
    "science",
    "garden",
    "market",
    "weather",
    "ocean",
    "engine",
    "battery",
    "window",
    "kitchen",
    "library",
    "teacher",
    "student",
    "doctor",
    "village",
    "harbor",
    "festival",
    "quickly",
    "slowly",
    "bright",
    "quiet",
    "ancient",
    "modern",
    "simple",
    "complex",
    "green",
    "golden",
    "northern",
    "early",
]


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def short_texts(count: int, seed: int = 1) -> list[str]:
    """Sentences of 17-22 words: about 23 tokens each for a BERT tokenizer."""
    rng = random.Random(seed)
    return [sentence(rng, rng.randint(17, 22)) for _ in range(count)]


def mixed_texts(count: int, seed: int = 2) -> list[str]:
    """Lengths as in a retrieval corpus: mostly short, some paragraphs (5 to 180 words).

    The longest stay under 256 tokens, all-MiniLM-L6-v2's limit, so that no
    server truncates or rejects them.
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        roll = rng.random()
        words = (
            rng.randint(3, 30)
            if roll < 0.6
            else rng.randint(30, 100)
            if roll < 0.9
            else rng.randint(100, 180)
        )
        texts.append(sentence(rng, words))
    return texts
