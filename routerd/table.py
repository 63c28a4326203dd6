"""RoutingTable: the immutable snapshot every request reads, built once per (re)load.

Everything derivable from the files is computed here, so the request path only does dict hits:
key hash -> key entry (with the resolved set of models it may call), model or alias -> route
(integer prices, enabled deployments with live providers), and the public model list. Building
is the fallible step; swapping the reference afterwards cannot fail (prepare-then-swap).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from routerd.config.model import (
    Deployment,
    KeyConfig,
    LoadedConfig,
    ModelConfig,
    Pricing,
    RateLimits,
    Timeouts,
)
from routerd.metering.budgets import BudgetRule, RuleIndex, build_rules, model_rules
from routerd.metering.pricing import PicoPrices
from routerd.metering.ratelimit import RatePlan, RateScope
from routerd.providers.base import Transport
from routerd.providers.registry import Provider, build_provider, unsupported_reason


@dataclass(frozen=True, slots=True)
class DeploymentRoute:
    """One deployment of one model, with everything the request path needs precomputed:
    effective timeouts (the model's overrides over the provider's), its own price when it has
    one, the key of its health state (survives reloads while unchanged) and its journal label."""

    deployment: Deployment
    provider: Provider
    timeouts: Timeouts = field(default_factory=Timeouts)
    pricing: Pricing | None = None
    prices: PicoPrices | None = None
    key: tuple[str, str, str] = ("", "", "")
    label: str = ""


@dataclass(frozen=True, slots=True)
class ModelRoute:
    id: str
    config: ModelConfig
    prices: PicoPrices
    deployments: tuple[DeploymentRoute, ...]
    unavailable_reason: str | None
    public: dict[str, Any] = field(hash=False, compare=False)
    budgets: tuple[BudgetRule, ...] = ()  # model-glob budgets counting this model


@dataclass(frozen=True, slots=True)
class KeyEntry:
    config: KeyConfig
    allowed_models: frozenset[str]
    budgets: tuple[BudgetRule, ...] = ()  # budgets counting every request of this key
    rate_scopes: tuple[RateScope, ...] = ()  # key, user and tag limits, in that order
    blocked: bool = False  # the key's user is blocked (users.yaml): 403 at authentication
    # what admission takes under `rate_scopes` (None: no limit), derived with them
    rate_plan: RatePlan | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    generation: int
    config: LoadedConfig
    providers: dict[str, Provider]
    models: dict[str, ModelRoute]
    lookup: dict[str, ModelRoute]
    keys_by_hash: dict[str, KeyEntry]
    budgets: dict[str, BudgetRule] = field(default_factory=dict)
    # The budgets by scope (built when a key entry needed it), kept while the budgets are.
    rule_index: RuleIndex | None = field(default=None, compare=False, repr=False)

    def resolve(self, name: str) -> ModelRoute | None:
        return self.lookup.get(name)


def _providers(config: LoadedConfig, previous: RoutingTable | None) -> dict[str, Provider]:
    """Live providers; a provider whose config is unchanged keeps its pooled transport."""
    old = previous.providers if previous else {}
    out: dict[str, Provider] = {}
    for name, pconf in config.catalog.providers.items():
        if not pconf.enabled or unsupported_reason(pconf):
            continue
        if name in old and old[name].config == pconf:
            out[name] = old[name]  # unchanged: the same adapter and pooled transport
            continue
        out[name] = build_provider(pconf)
    return out


def _unavailable_reason(model: ModelConfig, config: LoadedConfig) -> str:
    reasons = []
    for dep in model.deployments:
        pconf = config.catalog.providers[dep.provider]
        reasons.append(
            f"{dep.provider}: {pconf.disabled_reason or unsupported_reason(pconf) or 'disabled'}"
        )
    return "no enabled deployment (" + "; ".join(reasons) + ")"


def _public(model: ModelConfig, created: int) -> dict[str, Any]:
    owner = model.id.split("/", 1)[0]
    p = model.pricing
    entry: dict[str, Any] = {
        "id": model.id,
        "object": "model",
        "created": created,
        "owned_by": owner,
        "name": model.display_name or model.id,
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "features": list(model.features),
        "pricing": {
            "prompt": p.prompt,
            "completion": p.completion,
            "cached_prompt": p.cached_prompt if p.cached_prompt is not None else p.prompt,
            "cache_write": p.cache_write if p.cache_write is not None else p.prompt,
            "unit": "USD per 1M tokens",
        },
    }
    return entry


def _deployment_route(model: ModelConfig, dep: Deployment, provider: Provider) -> DeploymentRoute:
    pconf = provider.config
    timeouts = model.timeouts.apply(pconf.timeouts) if model.timeouts else pconf.timeouts
    own = dep.pricing
    prices = (
        PicoPrices.from_usd(own.prompt, own.completion, own.cached_prompt, own.cache_write)
        if own
        else None
    )
    return DeploymentRoute(
        deployment=dep,
        provider=provider,
        timeouts=timeouts,
        pricing=own or model.pricing,
        prices=prices,
        key=(pconf.name, pconf.base_url or "", dep.model),
        label=f"{pconf.name}/{dep.model}",
    )


def _routes(
    config: LoadedConfig, providers: dict[str, Provider], created: int
) -> dict[str, ModelRoute]:
    routes: dict[str, ModelRoute] = {}
    for slug, model in config.catalog.models.items():
        p = model.pricing
        deployments = tuple(
            _deployment_route(model, dep, providers[dep.provider])
            for dep in model.deployments
            if dep.provider in providers
        )
        routes[slug] = ModelRoute(
            id=slug,
            config=model,
            prices=PicoPrices.from_usd(p.prompt, p.completion, p.cached_prompt, p.cache_write),
            deployments=deployments,
            unavailable_reason=None if deployments else _unavailable_reason(model, config),
            public=_public(model, created),
        )
    return routes


def _allowed(
    globs: tuple[str, ...], names: list[str], seen: dict[tuple[str, ...], frozenset[str]]
) -> frozenset[str]:
    """The models `globs` admit; keys share few distinct glob lists, so each is matched once."""
    found = seen.get(globs)
    if found is None:
        pattern = re.compile("|".join(fnmatch.translate(g) for g in globs))
        found = seen[globs] = frozenset(n for n in names if pattern.match(n))
    return found


_NO_LIMITS = RateLimits()


def _rate_scopes(key: KeyConfig, config: LoadedConfig) -> tuple[RateScope, ...]:
    scopes = []
    if key.limits != _NO_LIMITS:
        scopes.append(RateScope(f"key:{key.id}", key.limits))
    if key.user is not None and key.user in config.user_limits:
        scopes.append(RateScope(f"user:{key.user}", config.user_limits[key.user]))
    scopes += [
        RateScope(f"tag:{t}", config.tag_limits[t]) for t in key.tags if t in config.tag_limits
    ]
    return tuple(scopes)


def _models(
    config: LoadedConfig,
    providers: dict[str, Provider],
    created: int,
    rules: dict[str, BudgetRule],
    previous: RoutingTable | None,
) -> dict[str, ModelRoute]:
    """Every model's route with the model-glob budgets counting it. A reload that left the
    catalog and the providers as they were (the same objects) keeps the previous routes (and
    their `created`), with new budgets only where those changed."""
    same = (
        previous is not None
        and previous.config.catalog is config.catalog
        and previous.providers.keys() == providers.keys()
        and all(previous.providers[name] is p for name, p in providers.items())
    )
    routes = (
        previous.models if previous is not None and same else _routes(config, providers, created)
    )
    scoped = {rid: rule for rid, rule in rules.items() if rule.config.scope.kind == "model"}
    out = {}
    for slug, route in routes.items():
        budgets = model_rules(slug, scoped) if scoped else ()
        out[slug] = (
            route if route.budgets == budgets else dataclasses.replace(route, budgets=budgets)
        )
    return out


def _kept_rules(
    rules: dict[str, BudgetRule], previous: RoutingTable | None
) -> dict[str, BudgetRule]:
    """`rules`, each one equal to the previous table's as that object (which the reused key
    entries and routes hold: comparing them is then an identity check)."""
    old = previous.budgets if previous is not None else {}
    return {rid: old[rid] if old.get(rid) == rule else rule for rid, rule in rules.items()}


class _KeyEntries:
    """Builds every `KeyEntry` of one table, sharing the work keys have in common, and reusing
    the previous table's entry of a key when neither the key nor anything its entry derives
    from (model names, users' and tags' limits, blocked users) changed; with new budgets when
    only those changed for it."""

    def __init__(
        self,
        config: LoadedConfig,
        names: list[str],
        rules: dict[str, BudgetRule],
        previous: RoutingTable | None,
    ):
        self.config = config
        self.names = names
        self.rules = rules
        self.same_rules = previous is not None and previous.budgets == rules
        self.known_index = previous.rule_index if previous is not None and self.same_rules else None
        self.blocked = frozenset(u.id for u in config.users if u.blocked)
        self.allowed: dict[tuple[str, ...], frozenset[str]] = {}
        self.reusable: dict[str, KeyEntry] = {}
        if previous is not None and self._same_context(previous, rules):
            self.reusable = previous.keys_by_hash

    @functools.cached_property
    def index(self) -> RuleIndex:
        self.known_index = self.known_index or RuleIndex(self.rules)
        return self.known_index

    def _same_context(self, previous: RoutingTable, rules: dict[str, BudgetRule]) -> bool:
        old = previous.config
        return (
            list(previous.models) == self.names
            and old.user_limits == self.config.user_limits
            and old.tag_limits == self.config.tag_limits
            and frozenset(u.id for u in old.users if u.blocked) == self.blocked
        )

    def entry(self, key: KeyConfig) -> KeyEntry:
        old = self.reusable.get(key.sha256)
        if old is not None and (old.config is key or old.config == key):
            budgets = old.budgets if self.same_rules else self.index.for_key(key)
            if old.config is key and old.budgets == budgets:
                return old
            # Equal but another object (the file was read whole): hold this one, so the next
            # reload, which reuses it, finds the entry with an identity check.
            return dataclasses.replace(old, config=key, budgets=budgets)
        scopes = _rate_scopes(key, self.config)
        return KeyEntry(
            config=key,
            allowed_models=_allowed(key.models, self.names, self.allowed),
            budgets=self.index.for_key(key),
            rate_scopes=scopes,
            blocked=key.user in self.blocked,
            rate_plan=RatePlan(scopes) if scopes else None,
        )


def build_table(
    config: LoadedConfig, generation: int, created: int, previous: RoutingTable | None = None
) -> RoutingTable:
    """Build a complete table; raises ValueError on a price routerd cannot represent exactly."""
    providers = _providers(config, previous)
    rules = _kept_rules(build_rules(config.budgets, config.keys, config.users), previous)
    models = _models(config, providers, created, rules, previous)
    lookup = dict(models)
    for alias, target in config.catalog.aliases.items():
        lookup[alias] = models[target]
    entries = _KeyEntries(config, list(models), rules, previous)
    keys = {k.sha256: entries.entry(k) for k in config.keys}
    return RoutingTable(
        generation=generation,
        config=config,
        providers=providers,
        models=models,
        lookup=lookup,
        keys_by_hash=keys,
        budgets=rules,
        rule_index=entries.known_index,
    )


def retired_transports(old: RoutingTable, new: RoutingTable) -> list[Transport]:
    """Transports of the old table that the new one no longer uses (to close after a grace)."""
    kept = {id(p.transport) for p in new.providers.values()}
    return [p.transport for p in old.providers.values() if id(p.transport) not in kept]
