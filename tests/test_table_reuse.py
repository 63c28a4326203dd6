"""A table built from the previous one (what a reload does: routes, budget rules and key entries
reused where nothing they derive from changed) is the table a fresh build gives, through a
sequence of edits to keys, budgets, users' limits and the catalog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from routerd.config.load import DocumentCache, load_all
from routerd.table import ModelRoute, RoutingTable, build_table
from tests.conftest import key_hash, write_config

Edit = Callable[[dict[str, Any]], None]


def route_view(route: ModelRoute) -> tuple[Any, ...]:
    """A route without its provider objects (a fresh build makes new ones)."""
    deployments = tuple(
        (d.deployment, d.timeouts, d.pricing, d.prices, d.key, d.label) for d in route.deployments
    )
    return (route.id, route.config, route.prices, deployments, route.budgets)


def same_tables(kept: RoutingTable, fresh: RoutingTable) -> None:
    assert kept.keys_by_hash == fresh.keys_by_hash
    assert kept.budgets == fresh.budgets
    assert {k: route_view(r) for k, r in kept.lookup.items()} == {
        k: route_view(r) for k, r in fresh.lookup.items()
    }
    rules = kept.budgets.values()
    for slug, route in kept.models.items():  # what the budgets mean, not how they are built
        assert {r.id for r in route.budgets} == {
            r.id for r in rules if r.config.scope.kind == "model" and r.counts(None, None, (), slug)
        }
    for entry in kept.keys_by_hash.values():
        key = entry.config
        assert {r.id for r in entry.budgets} == {
            r.id
            for r in rules
            if r.config.scope.kind != "model" and r.counts(key.id, key.user, key.tags, "")
        }


def edit_yaml(path: Path, change: Edit) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_table_built_from_the_previous_one_equals_a_fresh_build(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    root = config.parent
    team = {"id": "team", "limit_usd": 5, "period": "daily"}  # counts the keys that list it
    model_cap = {"id": "echo-cap", "limit_usd": 9, "period": "total", "scope": {"model": "echo/*"}}
    new_key = {"id": "n1", "hash": key_hash("sk-new-key-1-0123456789abcdef"), "budgets": ["team"]}
    edits: list[tuple[str, Edit]] = [
        ("budgets.yaml", lambda d: d["budgets"].append(team)),
        ("keys.yaml", lambda d: d["keys"].append(new_key)),  # changes the team rule
        ("keys.yaml", lambda d: d["keys"][0].update(budgets=["team"])),
        ("budgets.yaml", lambda d: d["budgets"][1].update(limit_usd=6)),
        ("budgets.yaml", lambda d: d["budgets"].append(model_cap)),
        ("keys.yaml", lambda d: d.update(rate_limits={"users": {"alice": {"rpm": 7}}})),
        ("keys.yaml", lambda d: d["keys"][1].update(tags=["t"], models=["echo/*", "x/*"])),
        ("providers.yaml", lambda d: d["models"]["echo/echo-1"].update(context_length=99)),
        ("keys.yaml", lambda d: d["keys"].pop(0)),
    ]
    cache = DocumentCache()
    table = build_table(load_all(config, None, cache), 1, 0)
    counted: set[str] = set()
    for name, change in edits:
        edit_yaml(root / name, change)
        loaded = load_all(config, None, cache)
        kept = build_table(loaded, table.generation + 1, 0, previous=table)
        same_tables(kept, build_table(load_all(config), kept.generation, 0))
        table = kept
        counted |= {r.id for route in kept.models.values() for r in route.budgets}
        counted |= {r.id for entry in kept.keys_by_hash.values() for r in entry.budgets}
    assert counted == {"big", "team", "echo-cap"}  # every kind of rule was exercised
