"""The routing plan: which (model, deployment) pairs a request tries, in which order.

Pure: a table snapshot, the key, the admitted model, the request's routing preferences and a
health view in; an ordered tuple of `Candidate`s out. The server sends to them in order
(`server/pipeline.py first_answer`), and budget admission can price the worst case from them.

- Models: the requested one first, then its fallbacks: the request's OpenAI/OpenRouter-style
  `models` list when given, else the catalog's `fallbacks` (one level; fallbacks of fallbacks are
  not followed). A fallback the key may not use, or that has no enabled deployment, is skipped.
- Deployments of each model, by strategy: `weighted` (a weighted random order), `ordered` (as
  listed), `latency` (lowest EWMA time to first token first; unmeasured ones first, to measure
  them), `cost` (cheapest deployment price first). The model's `strategy` from the catalog,
  replaced by the `x-routerd-route` header, replaced by `provider.sort` in the body.
- OpenRouter `provider` preferences: `only` / `ignore` (provider names) filter; `order` puts
  those providers first, in that order; `max_price` ({prompt, completion} in USD per 1M tokens)
  filters by price; `allow_fallbacks: false` keeps only the `order` providers (or, without
  `order`, each model's first deployment) and drops the catalog's fallback models.
- Health: candidates whose deployment takes no attempt now (circuit open, cooling after a
  Retry-After) go after all the others, so they are skipped while others exist.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from routerd.config.model import Strategy
from routerd.errors import ErrorCode, RouterdError
from routerd.routing.health import HealthRegistry
from routerd.table import DeploymentRoute, KeyEntry, ModelRoute, RoutingTable

ROUTE_HEADER = "x-routerd-route"
ROUTING_FIELDS = ("models", "route", "provider")
_STRATEGIES: tuple[str, ...] = ("weighted", "ordered", "latency", "cost")
_SORTS: dict[str, Strategy] = {"price": "cost", "latency": "latency"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One thing to try: the model that would answer (the requested one or a fallback; its
    prices are the deployment's own when it has them) and the deployment to send to."""

    route: ModelRoute
    deployment: DeploymentRoute


@dataclass(frozen=True, slots=True)
class Preferences:
    """The request's routing wishes: the `models` list, `provider` preferences, overrides."""

    models: tuple[str, ...] = ()
    strategy: Strategy | None = None
    order: tuple[str, ...] = ()
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    allow_fallbacks: bool = True
    max_prompt: float | None = None
    max_completion: float | None = None


NO_PREFERENCES = Preferences()


def _invalid(message: str, param: str) -> RouterdError:
    return RouterdError(ErrorCode.invalid_request, message, param=param)


def _names(value: Any, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _invalid(f"'{param}' must be an array of names", param)
    return tuple(value)


def _sort(value: Any) -> Strategy:
    by = value.get("by") if isinstance(value, dict) else value
    if by not in _SORTS:
        raise _invalid("'provider.sort' must be 'price' or 'latency'", "provider.sort")
    return _SORTS[by]


def _max_price(value: Any) -> tuple[float | None, float | None]:
    if not isinstance(value, dict):
        raise _invalid("'provider.max_price' must be an object", "provider.max_price")
    out: list[float | None] = []
    for name in ("prompt", "completion"):
        price = value.get(name)
        if price is not None and (not isinstance(price, int | float) or isinstance(price, bool)):
            raise _invalid(f"'provider.max_price.{name}' must be a number", "provider.max_price")
        out.append(float(price) if price is not None else None)
    return out[0], out[1]


def _provider_prefs(raw: Any, strategy: Strategy | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _invalid("'provider' must be an object", "provider")
    prefs: dict[str, Any] = {"strategy": strategy}
    if "order" in raw:
        prefs["order"] = _names(raw["order"], "provider.order")
    if "only" in raw:
        prefs["only"] = frozenset(_names(raw["only"], "provider.only"))
    if "ignore" in raw:
        prefs["ignore"] = frozenset(_names(raw["ignore"], "provider.ignore"))
    if "allow_fallbacks" in raw:
        if not isinstance(raw["allow_fallbacks"], bool):
            raise _invalid("'provider.allow_fallbacks' must be a boolean", "provider")
        prefs["allow_fallbacks"] = raw["allow_fallbacks"]
    if raw.get("sort") is not None:
        prefs["strategy"] = _sort(raw["sort"])
    if raw.get("max_price") is not None:
        prefs["max_prompt"], prefs["max_completion"] = _max_price(raw["max_price"])
    return prefs


def take_preferences(body: dict[str, Any], header: str | None) -> Preferences:
    """Read and remove the routing fields (`models`, `route`, `provider`) from a request body,
    so they never reach an upstream; combine them with the `x-routerd-route` header."""
    if not header and "models" not in body and "route" not in body and "provider" not in body:
        return NO_PREFERENCES  # the common case: nothing to take
    raw = {name: body.pop(name) for name in ROUTING_FIELDS if name in body}
    if not raw and not header:
        return NO_PREFERENCES
    strategy: Strategy | None = None
    if header:
        if header not in _STRATEGIES:
            raise _invalid(f"{ROUTE_HEADER} must be one of {', '.join(_STRATEGIES)}", ROUTE_HEADER)
        strategy = cast(Strategy, header)
    if raw.get("route") not in (None, "fallback"):
        raise _invalid("'route' must be 'fallback'", "route")
    prefs: dict[str, Any] = {"strategy": strategy}
    if raw.get("provider") is not None:
        prefs = _provider_prefs(raw["provider"], strategy)
    if raw.get("models") is not None:
        prefs["models"] = _names(raw["models"], "models")
    return Preferences(**prefs)


def _fallback_routes(
    table: RoutingTable, key: KeyEntry, primary: ModelRoute, prefs: Preferences
) -> list[ModelRoute]:
    names = prefs.models or (primary.config.fallbacks if prefs.allow_fallbacks else ())
    routes = [primary]
    for name in names:
        route = table.resolve(name)
        if route is None:
            raise RouterdError(
                ErrorCode.model_not_found,
                f"model {name!r} in 'models' does not exist",
                param="models",
            )
        usable = route.id in key.allowed_models and not route.unavailable_reason
        if usable and all(route.id != r.id for r in routes):
            routes.append(route)
    return routes


def _price(dep: DeploymentRoute, route: ModelRoute) -> tuple[float, float]:
    pricing = dep.pricing or route.config.pricing
    return pricing.prompt, pricing.completion


def order_deployments(
    route: ModelRoute, strategy: Strategy, health: HealthRegistry, draw: Callable[[], float]
) -> list[DeploymentRoute]:
    """A model's deployments in the order the strategy tries them (`draw`: uniform in [0, 1))."""
    deps = list(route.deployments)
    if len(deps) < 2 or strategy == "ordered":
        return deps
    if strategy == "weighted":  # Efraimidis-Spirakis: a weighted draw without replacement
        keyed = [(draw() ** (1.0 / d.deployment.weight), i) for i, d in enumerate(deps)]
        return [deps[i] for _, i in sorted(keyed, reverse=True)]
    if strategy == "cost":
        return sorted(deps, key=lambda d: sum(_price(d, route)))

    def latency(dep: DeploymentRoute) -> tuple[bool, float]:
        ttft = health.ttft(dep.key)
        return ttft is not None, ttft or 0.0

    return sorted(deps, key=latency)


def _filtered(
    deps: list[DeploymentRoute], route: ModelRoute, prefs: Preferences
) -> list[DeploymentRoute]:
    out = []
    for dep in deps:
        name = dep.provider.config.name
        if (prefs.only is not None and name not in prefs.only) or name in prefs.ignore:
            continue
        prompt, completion = _price(dep, route)
        if prefs.max_prompt is not None and prompt > prefs.max_prompt:
            continue
        if prefs.max_completion is not None and completion > prefs.max_completion:
            continue
        out.append(dep)
    if prefs.order:
        rank: Mapping[str, int] = {name: i for i, name in enumerate(prefs.order)}
        first = sorted(
            (d for d in out if d.provider.config.name in rank),
            key=lambda d: rank[d.provider.config.name],
        )
        chosen = {id(d) for d in first}
        rest = [d for d in out if id(d) not in chosen] if prefs.allow_fallbacks else []
        return first + rest
    return out if prefs.allow_fallbacks else out[:1]


def _candidate(route: ModelRoute, dep: DeploymentRoute) -> Candidate:
    if dep.prices is not None:
        route = dataclasses.replace(route, prices=dep.prices)
    return Candidate(route, dep)


def plan(
    table: RoutingTable,
    key: KeyEntry,
    primary: ModelRoute,
    prefs: Preferences,
    health: HealthRegistry,
    rng: random.Random | None = None,
) -> tuple[Candidate, ...]:
    """The ordered candidates for one request; raises when the preferences leave none."""
    only = primary.deployments
    if prefs is NO_PREFERENCES and len(only) == 1 and not primary.config.fallbacks:
        return (_candidate(primary, only[0]),)  # one model, one deployment: nothing to order
    draw = rng.random if rng is not None else random.random
    candidates: list[Candidate] = []
    for route in _fallback_routes(table, key, primary, prefs):
        strategy = prefs.strategy or route.config.strategy
        deps = _filtered(order_deployments(route, strategy, health, draw), route, prefs)
        candidates.extend(_candidate(route, dep) for dep in deps)
    if not candidates:
        raise RouterdError(
            ErrorCode.model_not_found,
            f"no deployment of model {primary.id!r} matches the request's provider preferences",
            param="provider",
        )
    flags = [_ready(c, health) for c in candidates]
    if all(flags):
        return tuple(candidates)
    ready = [c for c, ok in zip(candidates, flags, strict=True) if ok]
    return tuple(ready + [c for c, ok in zip(candidates, flags, strict=True) if not ok])


def _ready(candidate: Candidate, health: HealthRegistry) -> bool:
    dep = candidate.deployment
    return health.refusal(dep.key, dep.provider.config.breaker) is None
