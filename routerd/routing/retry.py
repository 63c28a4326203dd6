"""Which failed attempts move on to the next candidate, and how long to wait before it.

Pure rules, no I/O. A failure is retried on the next candidate only when another deployment may
not have it: the upstream (or the way to it) failed, timed out, rate-limited or is overloaded.
A failure caused by the request itself (invalid_request, context_length_exceeded,
content_filter, payload_too_large) is never retried and never counts against the deployment.
provider_auth (routerd's credentials for that provider are wrong) is not the request's fault:
it counts against the deployment and moves on, but skips every other candidate of the same
provider, whose credentials are the same.

The wait before the next attempt is a short full-jitter exponential backoff (`backoff_base`
doubling per attempt, at most `backoff_max`). An upstream `Retry-After` is honoured for the
provider that sent it: when the next candidate is on the same provider, routerd waits that long
if it is within `retry_after_max`, and otherwise skips the candidate instead of sleeping.
"""

from __future__ import annotations

import random

from routerd.config.model import RetryConfig
from routerd.errors import ErrorCode

RETRYABLE: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.provider_unavailable,
        ErrorCode.provider_timeout,
        ErrorCode.provider_rate_limit,
        ErrorCode.provider_overloaded,
        ErrorCode.provider_auth,
    }
)
SKIPS_PROVIDER: frozenset[ErrorCode] = frozenset({ErrorCode.provider_auth})


def is_retryable(code: ErrorCode) -> bool:
    """True when the next candidate may succeed where this attempt failed."""
    return code in RETRYABLE


def counts_against_deployment(code: ErrorCode) -> bool:
    """True when the failure says something about the deployment's health."""
    return code in RETRYABLE


class Backoff:
    """The wait before each further attempt of one request."""

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._uniform = rng.uniform if rng is not None else random.uniform

    @property
    def max_attempts(self) -> int:
        return self._config.max_attempts

    def delay(self, attempts: int, retry_after: float | None, same_provider: bool) -> float | None:
        """Seconds to wait before attempt number `attempts + 1`, or None to skip that candidate
        (same provider, and its Retry-After is longer than `retry_after_max`)."""
        cap = min(self._config.backoff_max, self._config.backoff_base * 2 ** max(attempts - 1, 0))
        wait = self._uniform(0, cap)
        if retry_after and same_provider:
            if retry_after > self._config.retry_after_max:
                return None
            wait = max(wait, retry_after)
        return wait
