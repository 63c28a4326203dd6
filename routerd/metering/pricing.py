"""Exact pricing: USD-per-1M-token prices as integer pico-USD per token, and request cost.

Owns the conversion done once at config load (USD per 1M tokens x 10^6 = pico-USD per token, exact
for prices with up to six decimals) and the integer cost of one request's `Usage`. Nothing here
uses floats for money except `pico_to_usd`, which exists for display and the journal's `cost_usd`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from routerd.metering.usage import Usage

PICO_PER_USD = 10**12
_PICO_PER_TOKEN_PER_USD_PER_MILLION = 10**6  # 1e12 pico-USD / 1e6 tokens


def usd_per_million_to_pico_per_token(price: float | int | str) -> int:
    """Convert a price in USD per 1M tokens to an exact integer of pico-USD per token.

    Raises `ValueError` if the price is not a finite non-negative number or has more than six
    decimals (it would not be a whole number of pico-USD per token).
    """
    if isinstance(price, bool) or not isinstance(price, float | int | str):
        raise ValueError(f"price must be a number, got {type(price).__name__}")
    try:
        amount = Decimal(str(price).strip())
    except InvalidOperation:
        raise ValueError(f"price {price!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"price {price!r} is not a finite number")
    if amount < 0:
        raise ValueError(f"price {price!r} is negative")
    pico = amount * _PICO_PER_TOKEN_PER_USD_PER_MILLION
    if pico != pico.to_integral_value():
        raise ValueError(
            f"price {price!r} USD per 1M tokens has more than 6 decimals; "
            "it cannot be represented as a whole number of pico-USD per token"
        )
    return int(pico)


@dataclass(frozen=True, slots=True)
class PicoPrices:
    """Integer pico-USD per token for each kind of token of one model."""

    prompt: int
    completion: int
    cached_prompt: int
    cache_write: int

    @classmethod
    def from_usd(
        cls,
        prompt: float | int | str,
        completion: float | int | str,
        cached_prompt: float | int | str | None = None,
        cache_write: float | int | str | None = None,
    ) -> PicoPrices:
        """Build from USD-per-1M prices; missing cached/cache-write prices cost as prompt."""
        prompt_pico = usd_per_million_to_pico_per_token(prompt)

        def or_prompt(price: float | int | str | None) -> int:
            return prompt_pico if price is None else usd_per_million_to_pico_per_token(price)

        return cls(
            prompt=prompt_pico,
            completion=usd_per_million_to_pico_per_token(completion),
            cached_prompt=or_prompt(cached_prompt),
            cache_write=or_prompt(cache_write),
        )


def cost_pico(usage: Usage, prices: PicoPrices) -> int:
    """Exact cost of `usage` in pico-USD.

    `prompt_tokens` includes cached and cache-write tokens (OpenAI convention); reasoning tokens
    are already inside `completion_tokens`, so they are not charged again.
    """
    if not (usage.cached_tokens or usage.cache_write_tokens):  # the usual request
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        return (prompt if prompt > 0 else 0) * prices.prompt + (
            completion if completion > 0 else 0
        ) * prices.completion
    cached = max(usage.cached_tokens, 0)
    written = max(usage.cache_write_tokens, 0)
    uncached = max(usage.prompt_tokens - cached - written, 0)
    return (
        uncached * prices.prompt
        + cached * prices.cached_prompt
        + written * prices.cache_write
        + max(usage.completion_tokens, 0) * prices.completion
    )


def pico_to_usd(pico: int) -> float:
    """A pico-USD amount as a float number of USD (for display; never sum these)."""
    return pico / PICO_PER_USD
