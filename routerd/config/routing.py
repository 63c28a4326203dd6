"""The routing sections of the files -> frozen config: retries (routerd.yaml), circuit breakers,
per-model timeout overrides and presets (providers.yaml). Called by `load.py` on validated data.
"""

from __future__ import annotations

from typing import Any

from routerd.config.model import BreakerConfig, Preset, RetryConfig, TimeoutOverrides


def parse_timeout_overrides(data: dict[str, Any] | None) -> TimeoutOverrides | None:
    if not data:
        return None
    return TimeoutOverrides(
        connect=data.get("connect"),
        first_byte=data.get("first_byte"),
        idle=data.get("idle"),
        total=data.get("total"),
        total_set="total" in data,
    )


def parse_breaker(data: dict[str, Any] | None) -> BreakerConfig:
    if not data:
        return BreakerConfig()
    base = BreakerConfig()
    return BreakerConfig(
        failures=int(data.get("failures", base.failures)),
        error_rate=float(data.get("error_rate", base.error_rate)),
        window=float(data.get("window", base.window)),
        min_requests=int(data.get("min_requests", base.min_requests)),
        cooldown=float(data.get("cooldown", base.cooldown)),
    )


def parse_retries(data: dict[str, Any] | None) -> RetryConfig:
    if not data:
        return RetryConfig()
    base = RetryConfig()
    return RetryConfig(
        max_attempts=int(data.get("max_attempts", base.max_attempts)),
        backoff_base=float(data.get("backoff_base", base.backoff_base)),
        backoff_max=float(data.get("backoff_max", base.backoff_max)),
        retry_after_max=float(data.get("retry_after_max", base.retry_after_max)),
    )


def parse_preset(name: str, data: dict[str, Any]) -> Preset:
    models = list(data.get("models") or ())
    model = data.get("model") or models.pop(0)
    return Preset(
        name=name,
        model=model,
        models=tuple(m for m in models if m != model),
        parameters=tuple((data.get("parameters") or {}).items()),
        system=data.get("system"),
        provider=tuple((data.get("provider") or {}).items()),
    )
