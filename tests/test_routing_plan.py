"""The routing plan, pure: strategies, fallbacks, the `models` list, provider preferences."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from routerd.config.load import load_all
from routerd.config.model import BreakerConfig
from routerd.errors import ErrorCode, RouterdError
from routerd.routing.health import HealthRegistry
from routerd.routing.plan import Candidate, Preferences, plan, take_preferences
from routerd.table import KeyEntry, RoutingTable, build_table
from tests.conftest import write_config


def _dep(provider: str, **extra: Any) -> dict[str, Any]:
    return {"provider": provider, "model": f"{provider}-m", **extra}


CATALOG: dict[str, Any] = {
    "providers": {
        n: {"type": "openai", "base_url": f"http://{n}.test/v1", "api_key": "k"} for n in "abcd"
    },
    "models": {
        "x/weighted": {
            "pricing": {"prompt": 1, "completion": 2},
            "deployments": [_dep("a", weight=3), _dep("b", weight=1)],
            "fallbacks": ["x/cheap", "x/secret"],
        },
        "x/cheap": {
            "pricing": {"prompt": 1, "completion": 2},
            "strategy": "cost",
            "deployments": [
                _dep("a"),
                _dep("b", pricing={"prompt": 0.5, "completion": 1}),
                _dep("c", pricing={"prompt": 2, "completion": 4}),
            ],
        },
        "x/ordered": {
            "pricing": {"prompt": 1, "completion": 2},
            "strategy": "ordered",
            "deployments": [_dep("a"), _dep("b"), _dep("c")],
        },
        "x/latency": {
            "pricing": {"prompt": 1, "completion": 2},
            "strategy": "latency",
            "deployments": [_dep("a"), _dep("b"), _dep("c")],
        },
        "x/secret": {"pricing": {"prompt": 1, "completion": 2}, "deployments": [_dep("d")]},
    },
    "aliases": {"cheap": "x/cheap"},
}


@pytest.fixture
def table(tmp_path: Path) -> RoutingTable:
    path = write_config(tmp_path, None)
    (tmp_path / "providers.yaml").write_text(yaml.safe_dump(CATALOG))
    return build_table(load_all(path), 1, 0)


def key(table: RoutingTable, *models: str) -> KeyEntry:
    entry = next(iter(table.keys_by_hash.values()))
    return KeyEntry(entry.config, frozenset(models or table.models))


def labels(candidates: tuple[Candidate, ...]) -> list[str]:
    return [f"{c.route.id}:{c.deployment.provider.config.name}" for c in candidates]


def make(table: RoutingTable, model: str, prefs: Preferences | None = None, **kw: Any) -> Any:
    health = kw.pop("health", HealthRegistry())
    entry = kw.pop("key", key(table))
    return plan(table, entry, table.models[model], prefs or Preferences(), health, **kw)


def test_weighted_balance_within_tolerance(table: RoutingTable) -> None:
    rng = random.Random(7)
    firsts = Counter(
        make(table, "x/weighted", rng=rng)[0].deployment.provider.config.name for _ in range(20000)
    )
    assert abs(firsts["a"] / 20000 - 0.75) < 0.02
    candidates = make(table, "x/weighted", rng=rng)
    assert {c.deployment.provider.config.name for c in candidates[:2]} == {"a", "b"}


def test_fallbacks_follow_the_deployments_and_skip_models_the_key_may_not_use(
    table: RoutingTable,
) -> None:
    allowed = key(table, "x/weighted", "x/cheap")
    got = labels(make(table, "x/weighted", key=allowed, rng=random.Random(1)))
    assert got[2:] == ["x/cheap:b", "x/cheap:a", "x/cheap:c"]  # cost strategy; no x/secret
    assert len(got) == 5


def test_cost_strategy_uses_the_deployment_price_and_bills_it(table: RoutingTable) -> None:
    cheapest = make(table, "x/cheap")[0]
    assert cheapest.deployment.provider.config.name == "b"
    assert cheapest.route.prices.prompt == 500_000  # its own price: 0.5 USD / 1M tokens
    assert make(table, "x/cheap")[1].route.prices.prompt == 1_000_000


def test_latency_strategy_tries_unmeasured_then_fastest(table: RoutingTable) -> None:
    health = HealthRegistry()
    health.observe_ttft(("a", "http://a.test/v1", "a-m"), 0.5)
    health.observe_ttft(("b", "http://b.test/v1", "b-m"), 0.1)
    assert labels(make(table, "x/latency", health=health)) == [
        "x/latency:c",
        "x/latency:b",
        "x/latency:a",
    ]


def test_open_deployments_go_last(table: RoutingTable) -> None:
    health = HealthRegistry()
    dead = ("a", "http://a.test/v1", "a-m")
    for _ in range(5):
        health.acquire(dead, BreakerConfig())
        health.failed(dead, BreakerConfig())
    assert labels(make(table, "x/ordered", health=health)) == [
        "x/ordered:b",
        "x/ordered:c",
        "x/ordered:a",
    ]


def test_header_and_provider_sort_override_the_strategy(table: RoutingTable) -> None:
    prefs = take_preferences({}, "cost")
    assert labels(make(table, "x/cheap", prefs))[0] == "x/cheap:b"
    body = {"provider": {"sort": "price"}}
    assert take_preferences(body, "ordered").strategy == "cost"
    assert body == {}  # routing fields never reach an upstream


def test_models_list_replaces_catalog_fallbacks(table: RoutingTable) -> None:
    body: dict[str, Any] = {"models": ["cheap"], "route": "fallback", "model": "x/ordered"}
    prefs = take_preferences(body, None)
    assert body == {"model": "x/ordered"}
    got = labels(make(table, "x/ordered", prefs))
    assert got == [
        "x/ordered:a",
        "x/ordered:b",
        "x/ordered:c",
        "x/cheap:b",
        "x/cheap:a",
        "x/cheap:c",
    ]


def test_provider_order_only_ignore_max_price(table: RoutingTable) -> None:
    def run(provider: dict[str, Any], model: str = "x/ordered") -> list[str]:
        return labels(make(table, model, take_preferences({"provider": provider}, None)))

    assert run({"order": ["c", "b"]}) == ["x/ordered:c", "x/ordered:b", "x/ordered:a"]
    assert run({"order": ["c"], "allow_fallbacks": False}) == ["x/ordered:c"]
    assert run({"allow_fallbacks": False}) == ["x/ordered:a"]
    assert run({"only": ["b", "c"]}) == ["x/ordered:b", "x/ordered:c"]
    assert run({"ignore": ["a"]}) == ["x/ordered:b", "x/ordered:c"]
    assert run({"max_price": {"prompt": 1}}, "x/cheap") == ["x/cheap:b", "x/cheap:a"]
    assert run({"max_price": {"completion": 1.5}}, "x/cheap") == ["x/cheap:b"]


def test_allow_fallbacks_false_drops_catalog_fallback_models(table: RoutingTable) -> None:
    prefs = take_preferences({"provider": {"allow_fallbacks": False}}, None)
    got = labels(make(table, "x/weighted", prefs, rng=random.Random(3)))
    assert len(got) == 1 and got[0].startswith("x/weighted:")


def test_preferences_that_leave_nothing_are_a_404(table: RoutingTable) -> None:
    prefs = take_preferences({"provider": {"only": ["zzz"]}}, None)
    with pytest.raises(RouterdError) as caught:
        make(table, "x/ordered", prefs)
    assert caught.value.code is ErrorCode.model_not_found
    assert caught.value.param == "provider"


@pytest.mark.parametrize(
    ("body", "header", "param"),
    [
        ({"route": "sort"}, None, "route"),
        ({"models": "x/cheap"}, None, "models"),
        ({"provider": {"sort": "throughput"}}, None, "provider.sort"),
        ({"provider": {"order": [1]}}, None, "provider.order"),
        ({"provider": {"max_price": {"prompt": "1"}}}, None, "provider.max_price"),
        ({}, "fastest", "x-routerd-route"),
    ],
)
def test_invalid_preferences_are_400(body: dict[str, Any], header: str | None, param: str) -> None:
    with pytest.raises(RouterdError) as caught:
        take_preferences(body, header)
    assert caught.value.code is ErrorCode.invalid_request
    assert caught.value.param == param


def test_unknown_model_in_models_list_is_a_404(table: RoutingTable) -> None:
    prefs = take_preferences({"models": ["nope/nope"]}, None)
    with pytest.raises(RouterdError) as caught:
        make(table, "x/ordered", prefs)
    assert caught.value.code is ErrorCode.model_not_found
