"""Frozen dataclasses for every declarative file; nothing downstream touches raw YAML.

The loader (`load.py`) turns validated YAML into these objects once, at load or reload. Field names
follow the public file shapes of DESIGN.md; derived values (integer prices, resolved paths) are
computed here or in `table.py`, never on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

ProviderType = Literal["openai", "anthropic", "gemini", "azure", "echo"]
FsyncPolicy = Literal["always", "interval", "never"]
TransportKind = Literal["http1", "aiohttp"]
ServerKind = Literal["http1", "aiohttp"]
ManagedKind = Literal["keys", "users", "budgets", "pricing"]
Strategy = Literal["weighted", "ordered", "latency", "cost"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream timeouts in seconds; `None` means no limit for that phase."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0
    total: float | None = 600.0


@dataclass(frozen=True, slots=True)
class TimeoutOverrides:
    """A model's own timeouts (`models.<slug>.timeouts`): each set field replaces the provider's."""

    connect: float | None = None
    first_byte: float | None = None
    idle: float | None = None
    total: float | None = None
    total_set: bool = False  # `total: null` (no limit) is an override too

    def apply(self, base: Timeouts) -> Timeouts:
        return Timeouts(
            connect=self.connect if self.connect is not None else base.connect,
            first_byte=self.first_byte if self.first_byte is not None else base.first_byte,
            idle=self.idle if self.idle is not None else base.idle,
            total=self.total if self.total_set else base.total,
        )


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Per-provider circuit breaker of each deployment (`providers.<name>.circuit_breaker`).

    Opens after `failures` consecutive failures, or when at least `min_requests` attempts in the
    last `window` seconds failed at a rate of `error_rate` or more; stays open `cooldown`
    seconds, then lets one probe through (half-open): success closes it, failure reopens it."""

    failures: int = 5
    error_rate: float = 0.5
    window: float = 60.0
    min_requests: int = 10
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """`retries` in routerd.yaml: how a failed attempt moves on to the next candidate."""

    max_attempts: int = 3
    backoff_base: float = 0.05
    backoff_max: float = 0.5
    retry_after_max: float = 2.0


@dataclass(frozen=True, slots=True)
class JournalConfig:
    dir: Path
    fsync: FsyncPolicy = "interval"
    fsync_interval_seconds: float = 1.0
    queue_size: int = 10000
    max_file_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: Literal["json", "console"] = "json"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """`config/routerd.yaml`: the daemon itself and where the other files are."""

    path: Path
    listen_host: str
    listen_port: int
    providers_file: Path
    key_files: tuple[Path, ...]
    budget_files: tuple[Path, ...]
    master_key_sha256: str | None
    journal: JournalConfig
    timeouts: Timeouts
    max_body_bytes: int
    shutdown_grace_seconds: float
    logging: LoggingConfig
    metrics: MetricsConfig
    state_dir: Path | None = None
    user_files: tuple[Path, ...] = ()
    pricing_files: tuple[Path, ...] = ()

    def managed_file(self, kind: ManagedKind) -> Path | None:
        """The routerd-owned file of `kind` in `state_dir` (None when state_dir is not set)."""
        return self.state_dir / f"{kind}.yaml" if self.state_dir is not None else None

    retries: RetryConfig = RetryConfig()
    server: ServerKind = "http1"  # the HTTP server engine: routerd's own (http1), or aiohttp's


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One upstream account: `providers.<name>` in providers.yaml."""

    name: str
    type: ProviderType
    base_url: str | None
    api_key: str | None = field(repr=False)
    headers: tuple[tuple[str, str], ...]
    pool_size: int
    timeouts: Timeouts
    api_version: str | None
    enabled: bool
    disabled_reason: str | None
    max_concurrency: int | None = None
    queue_timeout: float = 1.0
    breaker: BreakerConfig = BreakerConfig()
    transport: TransportKind = "http1"  # upstream HTTP client: routerd's own, or aiohttp's


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per 1M tokens as written in the file; `table.py` turns them into integer pico-USD."""

    prompt: float
    completion: float
    cached_prompt: float | None = None
    cache_write: float | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    provider: str
    model: str
    weight: float = 1.0
    pricing: Pricing | None = None  # this deployment's own price; default: the model's


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One public model slug (`openai/gpt-4.1-mini`) of the catalog."""

    id: str
    pricing: Pricing
    deployments: tuple[Deployment, ...]
    context_length: int | None = None
    max_output_tokens: int | None = None
    features: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    display_name: str | None = None
    strategy: Strategy = "weighted"
    timeouts: TimeoutOverrides | None = None


@dataclass(frozen=True, slots=True)
class Preset:
    """`presets.<name>` in providers.yaml, requested as `model: "@preset/<name>"`.

    Fixes the model (or the `models` fallback list), default request parameters (the request's
    own fields win), an optional system prompt put before the request's, and provider
    preferences."""

    name: str
    model: str
    models: tuple[str, ...] = ()
    parameters: tuple[tuple[str, object], ...] = ()
    system: str | None = None
    provider: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Catalog:
    """`providers.yaml`: providers, models, aliases."""

    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    aliases: dict[str, str]
    presets: dict[str, Preset] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RateLimits:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One client key from a keys file; only the sha256 of the secret is ever held."""

    id: str
    sha256: str
    user: str | None = None
    tags: tuple[str, ...] = ()
    models: tuple[str, ...] = ("*",)
    limits: RateLimits = RateLimits()
    budgets: tuple[str, ...] = ()
    expires_at: datetime | None = None
    disabled: bool = False
    source: Path | None = None
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    created_at: str | None = None


# `per_user`: a template budget (any-llm style) that caps each user whose `budget_id` names it.
# `listed`: no `scope` in the file: the budget counts only the keys that list it.
BudgetScopeKind = Literal["key", "user", "tag", "model", "global", "per_user", "listed"]


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """What a budget counts: `listed` (no `scope` in the file) = only the keys that list it."""

    kind: BudgetScopeKind
    value: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """One spend cap. `period` is daily | weekly | monthly | total, or a window in seconds."""

    id: str
    limit_usd: float
    period: str
    period_seconds: int | None
    scope: BudgetScope
    source: Path | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One user (the owner a key's `user` names): blocked users' keys get 403."""

    id: str
    alias: str | None = None
    blocked: bool = False
    budget_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    source: Path | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A per-model price (USD per 1M tokens) applied over providers.yaml at load."""

    model: str
    pricing: Pricing
    source: Path | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """Everything read from disk for one generation of the routing table."""

    daemon: DaemonConfig
    catalog: Catalog
    keys: tuple[KeyConfig, ...]
    budgets: tuple[BudgetConfig, ...]
    warnings: tuple[str, ...] = ()
    user_limits: dict[str, RateLimits] = field(default_factory=dict)
    tag_limits: dict[str, RateLimits] = field(default_factory=dict)
    users: tuple[UserConfig, ...] = ()
    price_overrides: tuple[PriceOverride, ...] = ()
