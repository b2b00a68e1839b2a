"""Cost of an exchange from its usage and a price table.

The table maps model name patterns to USD per input, output and cached token;
the first matching pattern wins. Models served by the configured upstream (the
local model server) cost 0 unless a pattern prices them, and models of other
targets with no matching pattern get no cost (NULL) rather than a guess.
"""

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

BUILT_IN = Path(__file__).with_name("prices.json")


@dataclass(frozen=True, slots=True)
class Price:
    pattern: str
    input: float
    output: float
    cached: float


def load_prices(path: Path | None) -> list[Price]:
    """Read a price file ({"prices": [{"pattern", "input", "output", "cached"}]})."""
    source = path or BUILT_IN
    try:
        document = json.loads(source.read_text())
        rows = document["prices"]
        return [
            Price(
                pattern=str(row["pattern"]).lower(),
                input=float(row["input"]),
                output=float(row["output"]),
                cached=float(row.get("cached", row["input"])),
            )
            for row in rows
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"price file {source} is invalid ({error}); it must be JSON like "
            '{"prices": [{"pattern": "gpt-4o*", "input": 2.5e-06, "output": 1e-05}]}'
        ) from None


def cost_usd(
    prices: list[Price], model: str | None, usage: dict | None, local: bool
) -> float | None:
    """Return the cost in USD, or None when the usage or the price is unknown."""
    if (
        not usage
        or usage.get("prompt_tokens") is None
        and usage.get("completion_tokens") is None
    ):
        return None
    price = _match(prices, model)
    if price is None:
        return 0.0 if local else None

    prompt = usage.get("prompt_tokens") or 0
    cached = usage.get("cached_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    uncached = max(prompt - cached, 0)
    return uncached * price.input + cached * price.cached + completion * price.output


def _match(prices: list[Price], model: str | None) -> Price | None:
    if not model:
        return None
    name = model.lower()
    for price in prices:
        if fnmatchcase(name, price.pattern):
            return price
    return None
