"""Rate limits per scope (key, user, tag): requests per minute, tokens per minute, concurrency.

Owns the admission decision for `RateLimits` and the response headers it implies (OpenAI's
`x-ratelimit-*` names and Go-style durations such as `12ms`, `1s`, `6m0s`; `retry-after` and the
`retry-after-ms` the OpenAI and Anthropic SDKs prefer). All state lives in a `LedgerStore`. A
key's `RatePlan` (built with the routing table) holds everything its scopes take, so the request
path only fills in the token estimate: the ledger admits the plan together with the budget holds
in one atomic store call (`Ledger.admit`: every scope's rpm and tpm buckets and concurrency
slots, all or nothing, so a refused request consumes nothing anywhere) and settles it in one
(`Ledger.settle`: the slots back, each tpm bucket corrected by the plan's `corrections`).
`refill` charges the buckets at startup with what the journal shows of the last minute.

The buckets are the store's integer GCRA: `rpm: 600` is a bucket of 600 requests refilled
continuously over 60 s (burst 600, then one every 100 ms). Tokens are admitted on the caller's
estimate and corrected to the real usage at settlement (over-use leaves the bucket in debt until
it refills; under-use gives the difference back, never beyond a full bucket). Time is an explicit
`now` (epoch seconds), never a sleep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from routerd.config.model import RateLimits
from routerd.metering.store import (
    BucketState,
    ConcurrencySlot,
    LedgerStore,
    RateHit,
)

WINDOW_SECONDS = 60  # rpm and tpm are per minute
CONCURRENCY_RETRY_SECONDS = 1.0  # no clock says when a slot frees up; suggest a short wait

LimitKind = Literal["requests", "tokens", "concurrency"]
_REQUEST_HEADERS = tuple(f"x-ratelimit-{h}-requests" for h in ("limit", "remaining", "reset"))
_TOKEN_HEADERS = tuple(f"x-ratelimit-{h}-tokens" for h in ("limit", "remaining", "reset"))


@dataclass(frozen=True, slots=True)
class RateScope:
    """One set of limits and the id of what it limits: `key:ID`, `user:ID` or `tag:T`.

    The store names of its buckets and slot are derived once, here (scopes are built with the
    routing table, not per request)."""

    scope_id: str
    limits: RateLimits
    rpm_bucket: str = field(init=False, compare=False, repr=False)
    tpm_bucket: str = field(init=False, compare=False, repr=False)
    rpm_hit: RateHit | None = field(init=False, compare=False, repr=False)
    slot: ConcurrencySlot | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        sid, limits = self.scope_id, self.limits
        rpm = f"rpm:{sid}"
        hit = RateHit(rpm, 1, limits.rpm, WINDOW_SECONDS) if limits.rpm is not None else None
        slot = limits.concurrency
        object.__setattr__(self, "rpm_bucket", rpm)
        object.__setattr__(self, "tpm_bucket", f"tpm:{sid}")
        object.__setattr__(self, "rpm_hit", hit)
        object.__setattr__(
            self, "slot", ConcurrencySlot(f"concurrency:{sid}", slot) if slot is not None else None
        )


class LimitStatus(NamedTuple):
    """One limit as the response headers report it (the tightest scope of its kind)."""

    scope_id: str
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(slots=True)
class RateDecision:
    """The outcome of one admission (read-only by convention; a plain slots class because one is
    built per request).

    `failed` names the first limit that refused (requests, tokens, concurrency) and
    `failed_scope` its scope. `retry_after_seconds` is when every refusing limit would have room;
    `None` with `exceeds_limit` when the request alone is larger than a limit (never admissible).
    An allowed decision's concurrency slots are held until its reservation is settled.
    """

    allowed: bool
    requests: LimitStatus | None = None
    tokens: LimitStatus | None = None
    failed: LimitKind | None = None
    failed_scope: str | None = None
    retry_after_seconds: float | None = None
    exceeds_limit: bool = False
    _headers: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        """The `x-ratelimit-*` headers (limits that exist) and, when refused, `retry-after`.

        Computed once per decision (a response and its error path may both ask); callers copy
        it into their own header mapping and must not change it."""
        if self._headers is None:
            self._headers = self._make_headers()
        return self._headers

    def _make_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        status = self.requests
        if status is not None:
            out[_REQUEST_HEADERS[0]] = str(status.limit)
            out[_REQUEST_HEADERS[1]] = str(status.remaining)
            out[_REQUEST_HEADERS[2]] = format_duration(status.reset_seconds)
        status = self.tokens
        if status is not None:
            out[_TOKEN_HEADERS[0]] = str(status.limit)
            out[_TOKEN_HEADERS[1]] = str(status.remaining)
            out[_TOKEN_HEADERS[2]] = format_duration(status.reset_seconds)
        if not self.allowed and self.retry_after_seconds is not None:
            out["retry-after"] = str(max(math.ceil(self.retry_after_seconds), 1))
            out["retry-after-ms"] = str(max(math.ceil(self.retry_after_seconds * 1000), 1))
        return out


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's reset headers (Go's `time.Duration`) write it, in whole ms.

    `0s`, `250ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`. Rounded up so a client never retries early.
    """
    scaled = seconds * 1000
    ms = round(scaled)
    if not -1e-9 < scaled - ms < 1e-9:  # a whole number of ms (the usual case) is exact
        ms = math.ceil(round(scaled, 6))
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    head = f"{hours}h{minutes}m" if hours else (f"{minutes}m" if minutes else "")
    return f"{head}{secs}s"


def _unique(scopes: Sequence[RateScope]) -> tuple[RateScope, ...]:
    if len(scopes) == 1:
        return tuple(scopes)
    seen: dict[str, RateScope] = {}
    for scope in scopes:
        seen.setdefault(scope.scope_id, scope)
    return tuple(seen.values())


class _Limit(NamedTuple):
    """One bucket of a plan: its kind and scope, and the hit itself when its cost is fixed."""

    kind: LimitKind
    scope_id: str
    bucket: str
    limit: int
    hit: RateHit | None  # rpm: always one request; tpm: None, the estimate is per request


class RatePlan:
    """What admitting a request takes under a set of scopes, derived once (per key, at table
    build): the buckets in scope order (each scope's rpm, then tpm), the slots, and which
    buckets the headers and the token correction read. Immutable by convention."""

    __slots__ = (
        "_hit_template",
        "_token_hits",
        "empty",
        "limits",
        "requests",
        "scoped_slots",
        "scopes",
        "slot_names",
        "slots",
        "tokens",
        "tpm",
    )

    def __init__(self, scopes: Sequence[RateScope]) -> None:
        self.scopes = _unique(scopes)
        limits: list[_Limit] = []
        for scope in self.scopes:
            sid, rpm, tpm = scope.scope_id, scope.limits.rpm, scope.limits.tpm
            if scope.rpm_hit is not None and rpm is not None:
                limits.append(_Limit("requests", sid, scope.rpm_bucket, rpm, scope.rpm_hit))
            if tpm is not None:
                limits.append(_Limit("tokens", sid, scope.tpm_bucket, tpm, None))
        self.limits = tuple(limits)
        self.requests = tuple(i for i, lim in enumerate(limits) if lim.kind == "requests")
        self.tokens = tuple(i for i, lim in enumerate(limits) if lim.kind == "tokens")
        self.tpm = tuple((lim.bucket, lim.limit) for lim in limits if lim.kind == "tokens")
        self.scoped_slots = tuple((s.scope_id, s.slot) for s in self.scopes if s.slot is not None)
        self.slots = tuple(slot for _, slot in self.scoped_slots)
        self.slot_names = tuple(slot.name for slot in self.slots)
        self.empty = not self.limits and not self.slots
        # `hits`: the fixed hits in place, the per-request token hits filled in by index
        self._hit_template = [lim.hit for lim in limits]
        self._token_hits = tuple(
            (i, lim.bucket, lim.limit) for i, lim in enumerate(limits) if lim.hit is None
        )

    def hits(self, tokens: int) -> list[RateHit]:
        """The rate hits of one request admitted on an estimate of `tokens`."""
        hits: list[RateHit] = self._hit_template.copy()  # type: ignore[assignment]
        for index, bucket, limit in self._token_hits:
            hits[index] = RateHit(bucket, tokens, limit, WINDOW_SECONDS)
        return hits

    def corrections(self, delta: int) -> tuple[RateHit, ...]:
        """The tpm corrections of a request that used `delta` tokens more than admitted."""
        if not delta:
            return ()
        tpm = self.tpm
        if len(tpm) == 1:  # one scope with a tpm limit: no comprehension frame
            return (RateHit(tpm[0][0], delta, tpm[0][1], WINDOW_SECONDS),)
        return tuple([RateHit(name, delta, limit, WINDOW_SECONDS) for name, limit in tpm])

    def decide(
        self,
        buckets: Sequence[BucketState],
        concurrency_refused: str | None,
        admitted: bool = False,
    ) -> RateDecision:
        """The decision the store's bucket states imply (allowed if every bucket and slot had
        room, whatever else refused the admission, as it does when the store `admitted` it)."""
        requests = self._headline(self.requests, buckets)
        tokens_status = self._headline(self.tokens, buckets)
        if admitted or (concurrency_refused is None and all(state.allowed for state in buckets)):
            return RateDecision(True, requests, tokens_status)
        kind, sid, retry = self._refusal(buckets, concurrency_refused)
        return RateDecision(False, requests, tokens_status, kind, sid, retry, retry is None)

    def _headline(
        self, indices: tuple[int, ...], buckets: Sequence[BucketState]
    ) -> LimitStatus | None:
        """The status to report for one kind: a refusing bucket first, else the least remaining."""
        if not indices:
            return None
        if len(indices) == 1:
            index = indices[0]
        else:
            index = min(indices, key=lambda i: (buckets[i].allowed, buckets[i].remaining))
        state = buckets[index]
        return LimitStatus(
            self.limits[index].scope_id, state.limit, state.remaining, state.reset_after
        )

    def _refusal(
        self, buckets: Sequence[BucketState], concurrency_refused: str | None
    ) -> tuple[LimitKind, str, float | None]:
        """The first refusing limit, its scope, and when all refusing limits would have room."""
        failures: list[tuple[LimitKind, str, float | None]] = [
            (lim.kind, lim.scope_id, state.retry_after)
            for lim, state in zip(self.limits, buckets, strict=True)
            if not state.allowed
        ]
        for sid, slot in self.scoped_slots:
            if slot.name == concurrency_refused:
                failures.append(("concurrency", sid, CONCURRENCY_RETRY_SECONDS))
        kind, sid, _ = failures[0]
        waits = [wait for _, _, wait in failures]
        retry = None if any(w is None for w in waits) else max(w for w in waits if w is not None)
        return kind, sid, retry


async def refill(
    store: LedgerStore, used: Sequence[tuple[RateScope, int, int]], now: float
) -> None:
    """Startup: charge each scope the (requests, tokens) the journal shows in the last minute.

    Approximates the buckets as if all of it had been taken at once a moment ago (a bucket
    never holds more than its limit of debt, so this errs towards admitting).
    """
    hits = []
    for scope, requests, tokens in used:
        rpm, tpm = scope.limits.rpm, scope.limits.tpm
        if rpm is not None and requests:
            hits.append(RateHit(scope.rpm_bucket, min(requests, rpm), rpm, WINDOW_SECONDS))
        if tpm is not None and tokens:
            hits.append(RateHit(scope.tpm_bucket, min(tokens, tpm), tpm, WINDOW_SECONDS))
    if hits:
        await store.rate_adjust(hits, now)
