"""One request's meter, and what it takes from the rate-limit buckets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ezlink.accounts.billing import Bound
from ezlink.accounts.keys import KeyLimits
from ezlink.accounts.ratelimit import Decision, Take, format_reset
from ezlink.accounts.store.billing import Hold
from ezlink.accounts.store.repository import TokenCounts, Units
from ezlink.config import PriceConfig

# Status recorded for a request whose client left before the answer.
CLIENT_CLOSED = 499


@dataclass
class Meter:
    """One request's passage through the accounts: limits headers, then usage."""

    key_id: str | None
    model: str
    inputs: int
    user: str | None
    request_id: str | None
    limits: KeyLimits | None
    started: float = field(default_factory=time.perf_counter)
    headers: dict[str, str] = field(default_factory=dict)
    # Tokens taken from the key's TPM bucket at admission (a generation's
    # max_tokens): settlement takes the difference to the real count.
    reserved_tokens: int = 0
    family: str = "embeddings"
    stream: bool = False
    tokens: TokenCounts = field(default_factory=lambda: TokenCounts())
    units: Units = field(default_factory=lambda: Units())
    # Seconds from arrival to the first byte of a streamed answer.
    first_byte_s: float | None = None
    finish_reason: str | None = None
    status: int = CLIENT_CLOSED
    # Credits: the model's price when admitted (a later price change applies
    # to later requests only), the request's bound, and what it holds.
    price: PriceConfig | None = None
    bound: Bound = field(default_factory=Bound)
    hold: Hold | None = None
    # Whether admission reserved in the database (settlement must too).
    reserved: bool = False
    # Whether the rate-limit buckets granted the admission's takes (a refused
    # take took nothing, so settlement must give nothing back).
    bucket_taken: bool = False

    @property
    def prompt_tokens(self) -> int:
        return self.tokens.prompt

    def succeeded(self, tokens: TokenCounts) -> None:
        self.tokens = tokens
        self.status = 200


def ratelimit_headers(limits: KeyLimits, decision: Decision) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the buckets a key has."""
    headers: dict[str, str] = {}
    states = iter(decision.states)
    for kind, limit in (("requests", limits.rpm), ("tokens", limits.tpm)):
        if limit is None:
            continue
        state = next(states)
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(state.remaining)))
        headers[f"x-ratelimit-reset-{kind}"] = format_reset(state.reset_s)
    return headers


# A `need` no bucket falls short of: settling charges whatever the level.
ANY_LEVEL = -1e18


def bucket_takes(
    key_id: str, limits: KeyLimits, tokens: int | None, reserved: int = 0
) -> list[Take]:
    """The takes from a key's buckets (only those it has limits for).

    Admission (`tokens` None): one unit from the requests bucket, and the
    `reserved` tokens (a generation's max_tokens) from a tokens bucket that
    must hold them (at least one). Settlement: the tokens used less those
    reserved, at any level (a refund when fewer were used); the requests
    bucket is only read, for the headers.
    """
    settling = tokens is not None
    takes = []
    if limits.rpm is not None:
        cost, need = (0.0, ANY_LEVEL) if settling else (1.0, 1.0)
        takes.append(Take(f"{key_id}:rpm", limits.rpm, cost, need))
    if limits.tpm is not None:
        if settling:
            cost, need = float((tokens or 0) - reserved), ANY_LEVEL
        else:
            cost, need = float(reserved), float(min(max(reserved, 1), limits.tpm))
        takes.append(Take(f"{key_id}:tpm", limits.tpm, cost, need))
    return takes
