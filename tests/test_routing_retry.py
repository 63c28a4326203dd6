"""Retry rules and backoff, pure; and presets expanded per ingress format."""

from __future__ import annotations

import random

import pytest

from routerd.config.model import Preset, RetryConfig
from routerd.errors import ErrorCode, RouterdError
from routerd.routing.presets import expand_preset
from routerd.routing.retry import Backoff, counts_against_deployment, is_retryable

CONFIG = RetryConfig(max_attempts=3, backoff_base=0.05, backoff_max=0.2, retry_after_max=2.0)


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.invalid_request,
        ErrorCode.context_length_exceeded,
        ErrorCode.content_filter,
        ErrorCode.payload_too_large,
    ],
)
def test_request_faults_are_never_retried_nor_held_against_the_deployment(
    code: ErrorCode,
) -> None:
    assert not is_retryable(code)
    assert not counts_against_deployment(code)


def test_upstream_failures_are_retried() -> None:
    for code in (
        ErrorCode.provider_unavailable,
        ErrorCode.provider_timeout,
        ErrorCode.provider_rate_limit,
        ErrorCode.provider_overloaded,
        ErrorCode.provider_auth,
    ):
        assert is_retryable(code) and counts_against_deployment(code)


def test_backoff_is_jittered_and_capped() -> None:
    backoff = Backoff(CONFIG, random.Random(5))
    firsts = [backoff.delay(1, None, same_provider=False) for _ in range(200)]
    assert all(d is not None and 0 <= d <= 0.05 for d in firsts)
    assert len({round(d or 0, 6) for d in firsts}) > 100  # jittered
    later = [backoff.delay(6, None, same_provider=True) for _ in range(200)]
    assert all(d is not None and 0 <= d <= 0.2 for d in later)


def test_retry_after_is_honoured_for_the_same_provider_only() -> None:
    backoff = Backoff(CONFIG, random.Random(5))
    assert backoff.delay(1, 1.5, same_provider=True) == 1.5
    other = backoff.delay(1, 1.5, same_provider=False)
    assert other is not None and other <= 0.05
    assert backoff.delay(1, 30.0, same_provider=True) is None  # skip instead of sleeping


PRESET = Preset(
    name="support",
    model="x/main",
    models=("x/backup",),
    parameters=(("temperature", 0.2), ("max_tokens", 300)),
    system="Be brief.",
    provider=(("sort", "price"),),
)


def test_preset_in_chat_fixes_model_defaults_and_system() -> None:
    body = {"model": "@preset/support", "messages": [{"role": "user", "content": "hi"}]}
    out, name = expand_preset({"support": PRESET}, {**body, "temperature": 0.9}, "chat_completions")
    assert name == "@preset/support"
    assert out["model"] == "x/main"
    assert out["models"] == ["x/backup"]
    assert out["provider"] == {"sort": "price"}
    assert (out["temperature"], out["max_tokens"]) == (0.9, 300)  # the request's own wins
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}


def test_preset_system_in_messages_and_responses() -> None:
    presets = {"support": PRESET}
    out, _ = expand_preset(presets, {"model": "@preset/support", "system": "Own."}, "messages")
    assert out["system"] == "Be brief.\n\nOwn."
    blocks = [{"type": "text", "text": "Own."}]
    out, _ = expand_preset(presets, {"model": "@preset/support", "system": blocks}, "messages")
    assert out["system"][0] == {"type": "text", "text": "Be brief."}
    out, _ = expand_preset(presets, {"model": "@preset/support"}, "responses")
    assert out["instructions"] == "Be brief."


def test_no_preset_and_unknown_preset() -> None:
    body = {"model": "x/main"}
    assert expand_preset({}, body, "chat_completions") == (body, None)
    with pytest.raises(RouterdError) as caught:
        expand_preset({}, {"model": "@preset/nope"}, "chat_completions")
    assert caught.value.code is ErrorCode.model_not_found
