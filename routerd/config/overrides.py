"""Users and price overrides: validated documents -> `UserConfig` / `PriceOverride`, and the
overrides applied onto the catalog's `ModelConfig.pricing` (so the table and metering see them
with no other change).

Pure functions over documents already read and schema-checked by `load.py`; problems come back
as `(file, path, message)` triples for the loader to report with everything else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from routerd.config.model import Catalog, ModelConfig, PriceOverride, Pricing, UserConfig
from routerd.metering.pricing import usd_per_million_to_pico_per_token

Problem = tuple[Path, str, str]
Documents = list[tuple[Path, dict[str, Any]]]
_PRICE_FIELDS = ("prompt", "completion", "cached_prompt", "cache_write")


def also_in(first: Path, file: Path) -> str:
    """A duplicate's message suffix naming the file that defined the id first."""
    return "" if first == file else f" (also in {first})"


def users_from(docs: Documents) -> tuple[list[UserConfig], list[Problem]]:
    users: list[UserConfig] = []
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for file, data in docs:
        for i, entry in enumerate(data["users"]):
            user_id = entry["id"]
            if user_id in seen:
                also = also_in(seen[user_id], file)
                problems.append((file, f"users.{i}.id", f"duplicate user id {user_id!r}{also}"))
            seen[user_id] = file
            users.append(
                UserConfig(
                    id=user_id,
                    alias=entry.get("alias"),
                    blocked=bool(entry.get("blocked", False)),
                    budget_id=entry.get("budget_id"),
                    metadata=dict(entry.get("metadata") or {}),
                    source=file,
                    created_at=entry.get("created_at"),
                    updated_at=entry.get("updated_at"),
                )
            )
    return users, problems


def user_problems(users: list[UserConfig], budget_ids: set[str]) -> list[Problem]:
    """A user's `budget_id` must name a budget."""
    problems: list[Problem] = []
    index: dict[Path | None, int] = {}
    for user in users:
        i = index[user.source] = index.get(user.source, -1) + 1
        if user.budget_id is not None and user.budget_id not in budget_ids:
            problems.append(
                (
                    user.source or Path("?"),
                    f"users.{i}.budget_id",
                    f"unknown budget {user.budget_id!r}",
                )
            )
    return problems


def _price_problems(file: Path, i: int, entry: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name in _PRICE_FIELDS:
        if entry.get(name) is None:
            continue
        try:
            usd_per_million_to_pico_per_token(entry[name])
        except ValueError as exc:
            problems.append((file, f"pricing.{i}.{name}", str(exc)))
    return problems


def pricing_from(
    docs: Documents, models: dict[str, ModelConfig] | None
) -> tuple[list[PriceOverride], list[Problem]]:
    """Overrides in file order; each must name a catalog model and be exactly representable."""
    overrides: list[PriceOverride] = []
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for file, data in docs:
        for i, entry in enumerate(data["pricing"]):
            model = entry["model"]
            if models is not None and model not in models:
                problems.append((file, f"pricing.{i}.model", f"unknown model {model!r}"))
            if model in seen:
                also = also_in(seen[model], file)
                problems.append(
                    (file, f"pricing.{i}.model", f"duplicate price for {model!r}{also}")
                )
            seen[model] = file
            problems += _price_problems(file, i, entry)
            pricing = Pricing(
                prompt=entry["prompt"],
                completion=entry["completion"],
                cached_prompt=entry.get("cached_prompt"),
                cache_write=entry.get("cache_write"),
            )
            overrides.append(
                PriceOverride(
                    model=model,
                    pricing=pricing,
                    source=file,
                    created_at=entry.get("created_at"),
                    updated_at=entry.get("updated_at"),
                )
            )
    return overrides, problems


def override_pricing(catalog_price: Pricing, override: Pricing) -> Pricing:
    """Prompt and completion come from the override; cached and cache-write prices too when the
    override sets them, else the catalog's own (None = billed at the prompt price)."""
    return Pricing(
        prompt=override.prompt,
        completion=override.completion,
        cached_prompt=(
            override.cached_prompt
            if override.cached_prompt is not None
            else catalog_price.cached_prompt
        ),
        cache_write=(
            override.cache_write if override.cache_write is not None else catalog_price.cache_write
        ),
    )


def apply_overrides(catalog: Catalog, overrides: list[PriceOverride]) -> Catalog:
    if not overrides:
        return catalog
    models = dict(catalog.models)
    for override in overrides:
        model = models[override.model]
        models[override.model] = dataclasses.replace(
            model, pricing=override_pricing(model.pricing, override.pricing)
        )
    return dataclasses.replace(catalog, models=models)
