"""The price table and cost_usd: exact ids, dated ids, overrides, unknown models."""

from __future__ import annotations

import logging

import pytest
from sluiceway.engine import _pricing
from sluiceway.engine._events import Usage
from sluiceway.engine._pricing import (
    FREE_MODELS,
    PRICES,
    Pricing,
    _p,
    add_cost,
    cost_usd,
    find_pricing,
)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5", (3.0, 15.0, 3.75, 0.30)),
        ("claude-sonnet-4-5-20250929", (3.0, 15.0, 3.75, 0.30)),
        ("claude-opus-4-5-20251101", (5.0, 25.0, 6.25, 0.50)),
        ("claude-opus-4-1-20250805", (15.0, 75.0, 18.75, 1.50)),
        ("claude-opus-4-20250514", (15.0, 75.0, 18.75, 1.50)),
        ("claude-haiku-4-5", (1.0, 5.0, 1.25, 0.10)),
        ("claude-3-5-haiku-latest", (0.80, 4.0, 1.0, 0.08)),
        ("claude-3-haiku-20240307", (0.25, 1.25, 0.30, 0.03)),
        ("claude-3-7-sonnet@20250219", (3.0, 15.0, 3.75, 0.30)),
    ],
)
def test_known_models(model, expected):
    p = find_pricing(model)
    assert (p.input, p.output, p.cache_write, p.cache_read) == expected


@pytest.mark.parametrize(
    "model",
    ["claude-opus-4-6", "claude-sonnet-4-5-foo", "gpt-4o", "claude-sonnet", "claude-mock-1"],
)
def test_near_names_are_not_guessed(model):
    assert find_pricing(model) is None


def test_cost_counts_every_kind_of_token():
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=2_000_000,
        cache_creation_input_tokens=4_000_000,
        cache_read_input_tokens=8_000_000,
    )
    assert cost_usd("claude-sonnet-4-5", usage) == pytest.approx(3 + 30 + 15 + 2.4)
    assert cost_usd("claude-sonnet-4-5", Usage()) == 0.0


def test_overrides_win_and_extend():
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    overrides = {
        "claude-sonnet-4-5": Pricing(input=1, output=2, cache_write=0, cache_read=0),
        "my-model": {"input": 10, "output": 20},
    }
    assert cost_usd("claude-sonnet-4-5-20250929", usage, overrides) == pytest.approx(3.0)
    assert cost_usd("my-model", usage, overrides) == pytest.approx(30.0)
    assert find_pricing("my-model", overrides) == Pricing(10, 20, 12.5, 1.0)
    assert cost_usd("claude-haiku-4-5", usage, overrides) == pytest.approx(6.0)


def test_spec_pricing_objects_are_accepted():
    from sluiceway.specs._model import Pricing as SpecPricing

    overrides = {"claude-haiku-4-5": SpecPricing(input=2, output=4, cache_read=1, cache_write=3)}
    usage = Usage(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert cost_usd("claude-haiku-4-5-20251001", usage, overrides) == pytest.approx(10.0)


def test_unknown_model_is_null_with_one_warning(caplog, monkeypatch):
    # the warned-about names live for the process: start from none, whatever ran before
    monkeypatch.setattr(_pricing, "_warned", set())
    caplog.set_level(logging.WARNING, logger="sluiceway.pricing")
    assert cost_usd("no-such-model-xyz", Usage(10, 10)) is None
    assert cost_usd("no-such-model-xyz", Usage(10, 10)) is None
    assert cost_usd(None, Usage(10, 10)) is None
    messages = [r.getMessage() for r in caplog.records if r.name == "sluiceway.pricing"]
    assert messages == [
        "no price known for model 'no-such-model-xyz': cost_usd is null",
        "no price known for model '<none>': cost_usd is null",
    ]


def test_table_is_consistent():
    for name, p in PRICES.items():
        assert name.startswith("claude-")
        assert p.output > p.cache_write > p.input > p.cache_read


def test_the_table_builder_and_from_mapping_keep_each_price_in_its_place():
    assert _p(1.0, 2.0, 3.0, 4.0) == Pricing(input=1.0, output=2.0, cache_write=3.0, cache_read=4.0)
    given = Pricing.from_mapping({"input": 2, "output": 8, "cache_write": 3, "cache_read": 0.5})
    assert given == Pricing(input=2.0, output=8.0, cache_write=3.0, cache_read=0.5)
    assert Pricing.from_mapping({"input": 2, "output": 8}) == Pricing(input=2.0, output=8.0, cache_write=2.5, cache_read=0.2)


def test_cost_is_per_million_tokens_exactly():
    prices = {"m": Pricing(input=1.0, output=0.0, cache_write=0.0, cache_read=0.0)}
    assert cost_usd("m", Usage(3_000_000, 0), prices) == 3.0


def test_the_mock_models_cost_nothing_unless_priced():
    (model,) = FREE_MODELS
    assert cost_usd(model, Usage(10**6, 10**6)) == 0.0
    prices = {model: Pricing(input=1.0, output=2.0, cache_write=0.0, cache_read=0.0)}
    assert cost_usd(model, Usage(10**6, 10**6), prices) == 3.0


def test_add_cost_is_unknown_when_either_part_is():
    assert add_cost(1.5, 0.25) == 1.75
    assert add_cost(None, 0.25) is None and add_cost(1.5, None) is None and add_cost(None, None) is None
