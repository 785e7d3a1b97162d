"""Prices and cost arithmetic: exact decimals in, integer micro-units out.

Money is stored as integer micro-units of the one billing currency
(1 USD = 1_000_000), written and read as decimal strings ("2.50"), and never
passes through a float. A request's cost is computed exactly in Decimal and
rounded half up to a whole micro-unit; a hold (the most a request may cost)
is rounded up, so that a hold always covers the charge of the same bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from ezlink.accounts.money import MICROS_PER_UNIT, format_money, parse_money
from ezlink.accounts.store.repository import TokenCounts, Units
from ezlink.config import PriceConfig

__all__ = [
    "Bound",
    "PriceBook",
    "charge_micros",
    "exact_cost",
    "format_money",
    "hold_micros",
    "parse_money",
]

_MICRO = Decimal(MICROS_PER_UNIT)
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Bound:
    """The most a request may use, known before it runs: tokens in and out,
    and the units it asked for (n images, characters of speech, ...)."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    units: Units = field(default_factory=Units)
    action: str | None = None


def _image_price(price: PriceConfig, size: str | None, quality: str | None) -> Decimal:
    table = price.per_image
    if table is None:
        return _ZERO
    if isinstance(table, Decimal):
        return table
    entry = table.get(size or "") if size else None
    if entry is None:
        # An unlisted size is priced as the dearest listed one: never less.
        entry = max((_dearest(value) for value in table.values()), default=_ZERO)
    if isinstance(entry, Decimal):
        return entry
    if quality is not None and quality in entry:
        return entry[quality]
    return entry.get("standard", _dearest(entry))


def _dearest(entry: Decimal | Mapping[str, Decimal]) -> Decimal:
    if isinstance(entry, Decimal):
        return entry
    return max(entry.values(), default=_ZERO)


def exact_cost(
    price: PriceConfig, tokens: TokenCounts, units: Units = Units(), action: str | None = None
) -> Decimal:
    """What a request costs, in micro-units, exactly (not yet rounded).

    Cached prompt tokens are part of `prompt` (as OpenAI counts them) and are
    priced at `cached_input_per_1m` (the input price when none is given);
    reasoning tokens are part of `completion`.
    """
    input_price = price.input_per_1m or _ZERO
    cached_price = (
        price.cached_input_per_1m if price.cached_input_per_1m is not None else input_price
    )
    cached = min(tokens.cached, tokens.prompt)
    # Per 1M tokens in currency = per token in micro-units.
    total = (
        (tokens.prompt - cached) * input_price
        + cached * cached_price
        + tokens.completion * (price.output_per_1m or _ZERO)
    )
    money = _ZERO
    if units.images:
        money += units.images * _image_price(price, units.image_size, units.image_quality)
    if units.audio_seconds and price.per_audio_second is not None:
        money += Decimal(str(units.audio_seconds)) * price.per_audio_second
    if units.characters and price.per_1k_chars is not None:
        money += units.characters * price.per_1k_chars / 1000
    if price.per_request is not None:
        money += price.per_request
    if action is not None and price.per_task is not None:
        money += price.per_task.get(action, max(price.per_task.values(), default=_ZERO))
    return total + money * _MICRO


def charge_micros(
    price: PriceConfig | None,
    tokens: TokenCounts,
    units: Units = Units(),
    action: str | None = None,
) -> int:
    """The charge of a finished request: its exact cost rounded half up to a micro-unit."""
    if price is None:
        return 0
    cost = exact_cost(price, tokens, units, action)
    return int(cost.to_integral_value(rounding=ROUND_HALF_UP))


def hold_micros(price: PriceConfig | None, bound: Bound) -> int:
    """The hold of a request about to run: the cost of its bound, rounded up.

    The output bound is priced at the output price; the prompt bound at the
    input price (never the cheaper cached one)."""
    if price is None:
        return 0
    tokens = TokenCounts(prompt=bound.prompt_tokens, completion=bound.output_tokens)
    cost = exact_cost(price, tokens, bound.units, bound.action)
    return int(cost.to_integral_value(rounding=ROUND_CEILING))


class PriceBook:
    """Public model name → its price (None: free)."""

    def __init__(self, prices: Mapping[str, PriceConfig]) -> None:
        self._prices = dict(prices)

    @classmethod
    def from_models(cls, models: Iterable[object]) -> PriceBook:
        """From the settings' model configs: each public name gets its model's price."""
        prices: dict[str, PriceConfig] = {}
        for model in models:
            price = getattr(model, "price", None)
            if price is None:
                continue
            for name in getattr(model, "public_names", []):
                prices[name] = price
        return cls(prices)

    def price(self, model: str) -> PriceConfig | None:
        return self._prices.get(model)

    def __len__(self) -> int:
        return len(self._prices)
