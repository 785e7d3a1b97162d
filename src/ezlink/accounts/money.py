"""Money: integer micro-units of one currency, written as decimal strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS_PER_UNIT = 1_000_000
_MICRO = Decimal(MICROS_PER_UNIT)
_ZERO = Decimal(0)


def parse_money(text: str | Decimal | int) -> int:
    """A decimal amount ("2.50") as micro-units; ValueError when it is not
    one, or has more than six decimals (it would have to be rounded)."""
    try:
        amount = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    micros = amount * _MICRO
    if micros != micros.to_integral_value():
        raise ValueError(f"{text!r} has more than 6 decimals")
    return int(micros)


def format_money(micros: int) -> str:
    """Micro-units as a decimal string with at least two decimals: "2.50", "0.000150"."""
    text = f"{Decimal(micros) / _MICRO:f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction.ljust(2, '0')}"
