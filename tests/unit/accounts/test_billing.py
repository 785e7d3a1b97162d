"""Prices and cost arithmetic, against costs computed by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ezlink.accounts.billing import Bound, PriceBook, charge_micros, exact_cost, hold_micros
from ezlink.accounts.money import format_money, parse_money
from ezlink.accounts.store.repository import TokenCounts, Units
from ezlink.config import LocalModelConfig, PriceConfig, Settings


def test_money_is_exact_micro_units_and_decimal_strings() -> None:
    assert parse_money("2.50") == 2_500_000
    assert parse_money("0.000001") == 1
    assert format_money(2_500_000) == "2.50"
    assert format_money(150) == "0.00015"
    assert format_money(-1) == "-0.000001"
    for bad in ("0.0000001", "abc", "NaN", "inf"):
        with pytest.raises(ValueError):
            parse_money(bad)


def test_chat_with_cached_tokens() -> None:
    price = PriceConfig(input_per_1m="0.15", cached_input_per_1m="0.075", output_per_1m="0.60")
    tokens = TokenCounts(prompt=1000, cached=400, completion=500, reasoning=100)
    # (600 x 0.15 + 400 x 0.075 + 500 x 0.60) / 1M dollars = 420 micro-dollars.
    assert exact_cost(price, tokens) == Decimal(420)
    assert charge_micros(price, tokens) == 420


def test_cached_tokens_without_a_cached_price_pay_the_input_price() -> None:
    price = PriceConfig(input_per_1m="2.50", output_per_1m="10")
    assert charge_micros(price, TokenCounts(prompt=100, cached=60, completion=10)) == 350


def test_embeddings_round_half_up_per_request() -> None:
    price = PriceConfig(input_per_1m="0.02")
    assert exact_cost(price, TokenCounts(prompt=8)) == Decimal("0.16")
    assert charge_micros(price, TokenCounts(prompt=8)) == 0  # 0.16 micro-units
    assert charge_micros(price, TokenCounts(prompt=25)) == 1  # 0.5 rounds up
    assert charge_micros(price, TokenCounts(prompt=1_000_000)) == 20_000  # $0.02


def test_images_by_size_and_quality() -> None:
    price = PriceConfig(
        per_image={"1024x1024": {"standard": "0.04", "hd": "0.08"}, "1792x1024": "0.12"}
    )
    hd = Units(images=2, image_size="1024x1024", image_quality="hd")
    assert charge_micros(price, TokenCounts(), hd) == 160_000
    standard = Units(images=3, image_size="1024x1024")
    assert charge_micros(price, TokenCounts(), standard) == 120_000
    wide = Units(images=1, image_size="1792x1024", image_quality="hd")
    assert charge_micros(price, TokenCounts(), wide) == 120_000
    # An unlisted size is priced as the dearest one: a hold never falls short.
    assert charge_micros(price, TokenCounts(), Units(images=1, image_size="9x9")) == 120_000
    flat = PriceConfig(per_image="0.02")
    assert charge_micros(flat, TokenCounts(), Units(images=5)) == 100_000


def test_audio_seconds_characters_requests_and_tasks() -> None:
    assert (
        charge_micros(
            PriceConfig(per_audio_second="0.0001"), TokenCounts(), Units(audio_seconds=61.5)
        )
        == 6150
    )
    speech = PriceConfig(per_1k_chars="0.015")
    assert charge_micros(speech, TokenCounts(), Units(characters=1234)) == 18_510
    assert charge_micros(PriceConfig(per_request="0.002"), TokenCounts(prompt=5)) == 2000
    tasks = PriceConfig(per_task={"generate": "0.10", "upscale": "0.02"})
    assert charge_micros(tasks, TokenCounts(), action="upscale") == 20_000
    assert charge_micros(None, TokenCounts(prompt=10**9)) == 0  # no price: free


def test_a_hold_is_rounded_up_and_covers_any_charge_within_its_bound() -> None:
    price = PriceConfig(input_per_1m="0.02")
    assert hold_micros(price, Bound(prompt_tokens=8)) == 1  # 0.16 held as 1
    chat = PriceConfig(input_per_1m="0.15", cached_input_per_1m="0.075", output_per_1m="0.60")
    bound = Bound(prompt_tokens=300, output_tokens=256)
    held = hold_micros(chat, bound)
    for prompt in range(0, 301, 50):
        for completion in range(0, 257, 64):
            used = TokenCounts(prompt=prompt, cached=prompt // 2, completion=completion)
            assert charge_micros(chat, used) <= held


def test_a_price_book_names_every_public_name() -> None:
    model = LocalModelConfig(
        id="m", package="p", aliases=["alias"], price=PriceConfig(input_per_1m="0.02")
    )
    book = PriceBook.from_models([model, LocalModelConfig(id="free", package="p")])
    assert book.price("alias") == book.price("m") == model.price
    assert book.price("free") is None


def test_require_price_refuses_a_model_without_one() -> None:
    with pytest.raises(ValueError, match="model `free` has no `price`"):
        Settings.model_validate(
            {"billing": {"require_price": True}, "models": [{"id": "free", "package": "p"}]}
        )
    Settings.model_validate(
        {
            "billing": {"require_price": True},
            "models": [{"id": "m", "package": "p", "price": {"input_per_1m": "0.02"}}],
        }
    )
