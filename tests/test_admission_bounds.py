"""The worst-case cost a request holds on its budgets (README "Budgets and rate limits"): text
prompts are bounded by their bytes, images by a fixed allowance, output by max tokens, the
model's cap, or a default, at the highest price of every model the request may fall back to."""

from __future__ import annotations

import orjson

from routerd.config.model import Deployment, ModelConfig, Pricing
from routerd.metering.pricing import PicoPrices
from routerd.server.admission import (
    DEFAULT_OUTPUT_BOUND,
    IMAGE_TOKEN_BOUND,
    estimate,
    worst_case_pico,
)
from routerd.table import ModelRoute


def route(prompt: float, completion: float, cap: int | None, cache_write: float | None = None):  # type: ignore[no-untyped-def]
    config = ModelConfig(
        id="m/x",
        pricing=Pricing(prompt, completion, None, cache_write),
        deployments=(Deployment("p", "x"),),
        max_output_tokens=cap,
    )
    prices = PicoPrices.from_usd(prompt, completion, None, cache_write)
    return ModelRoute("m/x", config, prices, (), None, {})


def body_bytes(body: dict[str, object]) -> tuple[bytes, dict[str, object]]:
    return orjson.dumps(body), body


def test_text_prompt_is_bounded_by_its_bytes_and_output_by_max_tokens() -> None:
    raw, body = body_bytes(
        {"model": "m/x", "max_tokens": 100, "messages": [{"role": "user", "content": "é" * 50}]}
    )
    est = estimate(raw, body)
    assert est.prompt_bound == len(raw) and est.requested_output == 100
    # 1 USD / 1M prompt tokens = 10^6 pico-USD a token; 2 USD / 1M completion = 2 * 10^6
    assert worst_case_pico(est, [route(1, 2, 16384)], False) == len(raw) * 10**6 + 100 * 2 * 10**6


def test_each_image_part_adds_a_fixed_allowance_whatever_its_url_length() -> None:
    parts = [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}] * 2
    raw, body = body_bytes({"model": "m/x", "messages": [{"role": "user", "content": parts}]})
    assert estimate(raw, body).prompt_bound == len(raw) + 2 * IMAGE_TOKEN_BOUND
    anthropic = [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]
    raw, body = body_bytes({"model": "m/x", "messages": [{"role": "user", "content": anthropic}]})
    assert estimate(raw, body).prompt_bound == len(raw) + IMAGE_TOKEN_BOUND


def test_without_max_tokens_the_models_cap_or_the_default_bounds_the_output() -> None:
    raw, body = body_bytes({"model": "m/x", "messages": []})
    est = estimate(raw, body)
    assert est.requested_output is None
    capped = worst_case_pico(est, [route(0, 1, 4096)], False)
    assert capped == 4096 * 10**6
    uncapped = worst_case_pico(est, [route(0, 1, None)], False)
    assert uncapped == DEFAULT_OUTPUT_BOUND * 10**6
    too_many = estimate(*body_bytes({"model": "m/x", "max_tokens": 10**6, "messages": []}))
    assert worst_case_pico(too_many, [route(0, 1, 4096)], False) == 4096 * 10**6


def test_the_dearest_fallback_and_cache_write_price_set_the_hold() -> None:
    raw, body = body_bytes({"model": "m/x", "max_tokens": 10, "messages": []})
    est = estimate(raw, body)
    cheap, dear = route(1, 1, None), route(1, 5, None, cache_write=3)
    expected = len(raw) * 3 * 10**6 + 10 * 5 * 10**6
    assert worst_case_pico(est, [cheap, dear], False) == expected
    assert worst_case_pico(est, [route(1, 5, None)], True) == len(raw) * 10**6  # embeddings
