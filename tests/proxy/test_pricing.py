"""Cost from usage and the price table."""

import json
from pathlib import Path

import pytest

from app.pricing import cost_usd, load_prices

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "cached_tokens": 200}


def test_first_matching_pattern_wins():
    prices = load_prices(None)

    cost = cost_usd(prices, "gpt-4o-mini-2024-07-18", USAGE, local=False)

    assert cost == pytest.approx(800 * 0.00000015 + 200 * 0.000000075 + 500 * 0.0000006)


def test_local_model_costs_nothing():
    assert cost_usd(load_prices(None), "llama3.2", USAGE, local=True) == 0.0


def test_unknown_remote_model_has_no_cost():
    assert cost_usd(load_prices(None), "some-cloud-model", USAGE, local=False) is None


def test_missing_usage_has_no_cost():
    assert cost_usd(load_prices(None), "gpt-4o", None, local=False) is None


def test_user_file_replaces_table(tmp_path: Path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"prices": [{"pattern": "llama*", "input": 1e-6, "output": 2e-6}]})
    )

    cost = cost_usd(load_prices(path), "llama3.2", USAGE, local=True)

    assert cost == pytest.approx(1000 * 1e-6 + 500 * 2e-6)


def test_invalid_file_names_path_and_shape(tmp_path: Path):
    path = tmp_path / "prices.json"
    path.write_text("{not json")

    with pytest.raises(ValueError, match="prices.json"):
        load_prices(path)
