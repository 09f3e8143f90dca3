"""Prices a target does not declare, from genai-prices (a maintained table of LLM prices).

Looked up when a plan is compiled, by provider type and model; the table is imported only then, and
only for a target that declares no price on a type the table knows (its import takes ~0.4 s).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

__all__ = ["PRICE_TABLE_IDS", "PriceSource", "TablePrice", "table_price"]

PriceSource = Literal["policy", "genai-prices", "unknown"]
"""Where a target's price came from (`router explain` shows it)."""

PRICE_TABLE_IDS = {
    "openai": "openai",
    "azure_openai": "azure",
    "anthropic": "anthropic",
    "bedrock": "aws",
    "groq": "groq",
    "together": "together",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "mistral": "mistral",
    "openrouter": "openrouter",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
    "gemini": "google",
    "gemini_openai": "google",
    "vertex": "google",
}
"""The genai-prices provider of each built-in provider type whose models it prices."""


@dataclass(frozen=True, slots=True)
class TablePrice:
    """USD per million tokens, as the table gives them for a prompt below any long-context tier."""

    input: float
    output: float


@functools.lru_cache(maxsize=1024)
def table_price(provider_type: str, model: str) -> TablePrice | None:
    """The table's price of `model` on a provider of `provider_type`, or None when it has none."""
    table_id = PRICE_TABLE_IDS.get(provider_type)
    if table_id is None:
        return None
    from genai_prices import data_snapshot  # here: see the module's docstring

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, table_id, None)
    except LookupError:
        return None
    prices = info.get_prices(datetime.now(tz=UTC))
    per_input = _base(getattr(prices, "input_mtok", None))
    per_output = _base(getattr(prices, "output_mtok", None))
    if per_input is None and per_output is None:
        return None  # priced by something else (audio seconds, requests): nothing a token estimate can use
    return TablePrice(per_input or 0.0, per_output or 0.0)


def _base(price: Any) -> float | None:
    """A flat price, or the first tier of a tiered one (the price of prompts below its threshold)."""
    if price is None:
        return None
    if isinstance(price, Decimal | int | float):
        return float(price)
    return float(price.base)
