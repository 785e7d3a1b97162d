"""What the API hands an audio or moderation model and what it gets back.

Provider-neutral, like ``engine.generation_types``: the local models
(``engine.local_audio``) answer these, and an upstream provider could too.
The API renders them in OpenAI's shapes (json, verbose_json, text, srt,
vtt; the moderation object).

Moderation, honestly. The local moderator is a *profanity classifier*
(alt-profanity-check, see backends/profanity.py), not OpenAI's moderation
model. It speaks for one category: ``harassment``, since what it detects,
insults and abusive words aimed at a reader, is what OpenAI files under
harassment ("content that expresses, incites, or promotes harassing
language towards any target"). It does *not* speak for ``hate``: its
training data merges hate speech into "offensive", so it cannot tell a slur
against a group from swearing ("this is fucking great!" scores 1.0), and it
misses hate put politely ("... should all go back" scores 0.32); a hate
score from it would be a harassment score under a false name. Every other
category (violence, self-harm, sexual, illicit, and the threatening
subcategories) it cannot judge: those are ``false`` in ``categories`` and
absent from ``category_scores``, so that no client mistakes a missing
judgement for a low score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ezlink.backends.audio_codec import SpeechFormat

TranscriptionFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
TimestampGranularity = Literal["word", "segment"]

# OpenAI's moderation categories (omni-moderation), in its order.
MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# The ones the local profanity classifier scores (see the module docstring).
PROFANITY_CATEGORIES: tuple[str, ...] = ("harassment",)


@dataclass(frozen=True)
class SpeechRequest:
    """A validated /v1/audio/speech request.

    ``instructions`` (tone, accent) is carried for upstreams that take it;
    the local Piper voice has no style control and ignores it.
    """

    input: str
    voice: str
    response_format: SpeechFormat = "mp3"
    speed: float = 1.0
    instructions: str | None = None


@dataclass(frozen=True)
class TranscriptionRequest:
    """A validated /v1/audio/transcriptions request; ``file`` is the upload's bytes."""

    file: bytes
    filename: str = "audio"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    response_format: TranscriptionFormat = "json"
    timestamp_granularities: tuple[TimestampGranularity, ...] = ("segment",)

    @property
    def word_timestamps(self) -> bool:
        return "word" in self.timestamp_granularities


@dataclass(frozen=True)
class TranscriptionWord:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class TranscriptionSegment:
    """A segment as OpenAI's verbose_json lists it."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class TranscriptionResult:
    """What was heard. ``duration`` is the decoded audio's length in seconds
    (what usage is counted in), never the client's claim; ``language`` is an
    ISO 639-1 code ("en"; verbose_json spells it out, "english")."""

    text: str
    language: str
    duration: float
    segments: tuple[TranscriptionSegment, ...] = ()
    words: tuple[TranscriptionWord, ...] = ()


@dataclass(frozen=True)
class ModerationResult:
    """One input's verdict: every category in ``categories``, scores only where judged."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_profanity(cls, score: float, threshold: float) -> ModerationResult:
        """The verdict of the profanity classifier: its score stands for harassment."""
        scores = dict.fromkeys(PROFANITY_CATEGORIES, score)
        categories = {
            name: name in scores and scores[name] >= threshold for name in MODERATION_CATEGORIES
        }
        return cls(flagged=any(categories.values()), categories=categories, category_scores=scores)
