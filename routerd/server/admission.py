"""Admission: rate limits and budget reservations for one request, before any upstream call.

Owns the request-side estimates and the client-facing refusals:

- Worst-case cost for budgets: prompt tokens are bounded by the request body's UTF-8 byte length
  (a BPE token is at least one byte, and the JSON framing around the text is longer than the
  chat template tokens a provider adds) plus `IMAGE_TOKEN_BOUND` per image part; output tokens by
  the request's max tokens, capped by the model's `max_output_tokens`, or that cap when the
  request sets none, or `DEFAULT_OUTPUT_BOUND` when neither does. Prices are the highest of
  every model the request may fall back to (prompt at max(prompt, cache write)).
- Rate limits: `tpm` is admitted on bytes/4 + requested max tokens and corrected at finish.
- 429 rate_limit_exceeded with `retry-after` and `x-ratelimit-*`; 402 key_limit_exceeded or
  insufficient_credits naming the budget and when it resets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.ledger import BudgetRefusal, Reservation
from routerd.metering.pricing import pico_to_usd
from routerd.metering.ratelimit import RateDecision
from routerd.metering.usage import format_ts
from routerd.server.context import RequestContext
from routerd.server.gateway import Gateway
from routerd.table import ModelRoute

IMAGE_TOKEN_BOUND = 2500  # per image part: above OpenAI's and Anthropic's largest image cost
DEFAULT_OUTPUT_BOUND = 8192  # output bound when neither the request nor the catalog sets one
_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_IMAGE_MARKERS = (b'"type":"image', b'"type": "image', b'"input_image"')


class Estimate(NamedTuple):
    prompt_bound: int  # tokens, an upper bound for text
    requested_output: int | None  # max tokens the request asked for, if any

    @property
    def rate_tokens(self) -> int:
        return self.prompt_bound // 4 + (self.requested_output or 0)


def estimate(raw: bytes, body: dict[str, Any], embeddings: bool = False) -> Estimate:
    # every marker contains b"image": one scan of a text-only body instead of one per marker
    images = sum(raw.count(marker) for marker in _IMAGE_MARKERS) if b"image" in raw else 0
    requested = None
    if not embeddings:
        for name in _MAX_TOKEN_FIELDS:
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                requested = value
                break
    return Estimate(len(raw) + images * IMAGE_TOKEN_BOUND, requested)


def worst_case_pico(est: Estimate, routes: Sequence[ModelRoute], embeddings: bool) -> int:
    worst = 0
    for route in routes:
        prices = route.prices
        cost = est.prompt_bound * max(prices.prompt, prices.cache_write)
        if not embeddings:
            cap = route.config.max_output_tokens
            out = est.requested_output or cap or DEFAULT_OUTPUT_BOUND
            if cap is not None:
                out = min(out, cap)
            cost += out * prices.completion
        worst = max(worst, cost)
    return worst


def _rate_refusal(gateway: Gateway, decision: RateDecision) -> RouterdError:
    scope = decision.failed_scope or ""
    gateway.metrics.rate_limited(scope.split(":", 1)[0])
    if decision.exceeds_limit:
        message = f"request is larger than the {decision.failed} per minute limit of {scope}"
    else:
        message = f"rate limit exceeded: {decision.failed} per minute of {scope}"
    if decision.failed == "concurrency":
        message = f"rate limit exceeded: too many concurrent requests for {scope}"
    return RouterdError(
        ErrorCode.rate_limit_exceeded,
        message,
        headers=dict(decision.headers()),
        details={"limit": decision.failed, "scope": scope},
    )


def _budget_refusal(gateway: Gateway, refusal: BudgetRefusal) -> RouterdError:
    rule = refusal.rule
    gateway.metrics.budget_rejected(rule.id)
    resets = format_ts(refusal.window.end) if refusal.window.end is not None else None
    when = f"; it resets at {resets}" if resets else "; it never resets"
    remaining = max(rule.limit_pico - refusal.spent - refusal.reserved, 0)
    return RouterdError(
        rule.error_code,
        f"budget {rule.id!r} ({rule.config.period}, limit ${rule.config.limit_usd}) has "
        f"${pico_to_usd(remaining):.6f} left, not enough for this request{when}",
        details={
            "budget_id": rule.id,
            "limit_usd": rule.config.limit_usd,
            "spent_usd": pico_to_usd(refusal.spent),
            "resets_at": resets,
        },
    )


async def admit(
    gateway: Gateway,
    ctx: RequestContext,
    est: Estimate,
    routes: Sequence[ModelRoute],
    embeddings: bool = False,
) -> None:
    """Take the rate-limit hits, concurrency slots and budget holds for `ctx` in one store call
    (all or nothing: a budget refusal takes no rate hit), or raise the refusal."""
    key = ctx.key
    assert key is not None
    ctx.prompt_estimate = est.prompt_bound // 4
    ledger = gateway.ledger
    if len(routes) == 1:
        rules = ledger.rules_for(key.budgets, (routes[0].budgets,))
    else:
        rules = ledger.rules_for(key.budgets, [route.budgets for route in routes])
    amount = worst_case_pico(est, routes, embeddings) if rules else 0
    admitted = await ledger.admit(rules, amount, key.rate_plan, est.rate_tokens)
    if admitted.rate is not None:
        ctx.rate = admitted.rate
        if not admitted.rate.allowed:
            raise _rate_refusal(gateway, admitted.rate)
    held = admitted.held
    if isinstance(held, BudgetRefusal):
        raise _budget_refusal(gateway, held)
    assert isinstance(held, Reservation)
    ctx.reservation = held
