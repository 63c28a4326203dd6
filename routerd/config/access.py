"""Keys and budgets files: their entries as `KeyConfig` / `BudgetConfig`, and their checks.

Owns the keys file shape (keys, the shared `rate_limits` of users and tags) and the budgets file
shape, duplicate ids and hashes across files (human and managed), and the cross-file check that
every budget a key lists exists.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routerd.config.documents import ConfigError, ConfigProblem, Reader
from routerd.config.model import BudgetConfig, BudgetScope, KeyConfig, RateLimits
from routerd.config.overrides import also_in


def _limits(limits: dict[str, Any]) -> RateLimits:
    return RateLimits(
        rpm=limits.get("rpm"), tpm=limits.get("tpm"), concurrency=limits.get("concurrency")
    )


def _key(entry: dict[str, Any], source: Path) -> KeyConfig:
    expires = entry.get("expires_at")
    return KeyConfig(
        id=entry["id"],
        sha256=entry["hash"].removeprefix("sha256:"),
        user=entry.get("user"),
        tags=tuple(entry.get("tags") or ()),
        models=tuple(entry.get("models") or ("*",)),
        limits=_limits(entry.get("limits") or {}),
        budgets=tuple(entry.get("budgets") or ()),
        expires_at=_parse_datetime(expires) if expires else None,
        disabled=bool(entry.get("disabled", False)),
        source=source,
        name=entry.get("name"),
        metadata=dict(entry.get("metadata") or {}),
        created_at=entry.get("created_at"),
    )


def _parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _budget(entry: dict[str, Any], source: Path) -> BudgetConfig:
    period = entry["period"]
    scope_data = entry.get("scope")
    if scope_data is None:
        scope = BudgetScope(kind="listed")
    elif scope_data in ("global", "per_user"):
        scope = BudgetScope(kind=scope_data)
    else:
        ((kind, value),) = scope_data.items()
        scope = BudgetScope(kind=kind, value=value)
    return BudgetConfig(
        id=entry["id"],
        limit_usd=entry["limit_usd"],
        period=period,
        period_seconds=int(period[:-1]) if period.endswith("s") else None,
        scope=scope,
        source=source,
        created_at=entry.get("created_at"),
        updated_at=entry.get("updated_at"),
    )


@dataclass(slots=True)
class KeyFiles:
    keys: list[KeyConfig] = field(default_factory=list)
    user_limits: dict[str, RateLimits] = field(default_factory=dict)
    tag_limits: dict[str, RateLimits] = field(default_factory=dict)


def _group_limits(file: Path, data: dict[str, Any], found: KeyFiles) -> list[ConfigProblem]:
    """`rate_limits: {users: {ID: limits}, tags: {T: limits}}` of one keys file, merged."""
    problems = []
    groups = data.get("rate_limits") or {}
    for kind, target in (("users", found.user_limits), ("tags", found.tag_limits)):
        for name, limits in (groups.get(kind) or {}).items():
            if name in target:
                problems.append(
                    ConfigProblem(file, f"rate_limits.{kind}.{name}", "defined in two files")
                )
            target[name] = _limits(limits)
    return problems


@dataclass(frozen=True, slots=True)
class _FileKeys:
    """One keys file as objects: each entry's key (None for an entry that failed: see
    `problems`). No object per key besides the key: a reload allocates as little as it can."""

    keys: tuple[KeyConfig | None, ...]
    problems: tuple[ConfigProblem, ...]


def _file_keys(
    file: Path, data: dict[str, Any], previous: tuple[dict[str, Any], _FileKeys] | None = None
) -> _FileKeys:
    """The file's keys; an entry that is the very object of the previous version's document
    (an unchanged entry of a reloaded file) keeps its `KeyConfig`."""
    old_entries, old_keys = (previous[0]["keys"], previous[1].keys) if previous else ([], ())
    known = {id(entry): i for i, entry in enumerate(old_entries)}
    keys: list[KeyConfig | None] = []
    problems = []
    for i, entry in enumerate(data["keys"]):
        at = known.get(id(entry))
        if at is not None and old_entries[at] is entry and old_keys[at] is not None:
            keys.append(old_keys[at])
            continue
        try:
            keys.append(_key(entry, file))
        except ValueError:  # the schema's date-time format is not checked by jsonschema
            keys.append(None)
            problems.append(
                ConfigProblem(file, f"keys.{i}.expires_at", "not an RFC 3339 date-time")
            )
    return _FileKeys(tuple(keys), tuple(problems))


def load_keys(
    files: tuple[Path, ...], managed: Path | None, reader: Reader
) -> tuple[KeyFiles, list[ConfigProblem]]:
    found = KeyFiles()
    problems: list[ConfigProblem] = []
    seen_ids: dict[str, Path] = {}
    seen_hashes: dict[str, str] = {}
    for file in files:
        try:
            data, _ = reader.document(file, "keys", managed=file == managed)
            parsed = reader.derived_since(
                file, "keys", functools.partial(_file_keys, file), managed=file == managed
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        problems += _group_limits(file, data, found)
        problems += parsed.problems
        for i, key in enumerate(parsed.keys):
            if key is None:
                continue
            if key.id in seen_ids:
                also = also_in(seen_ids[key.id], file)
                problems.append(
                    ConfigProblem(file, f"keys.{i}.id", f"duplicate key id {key.id!r}{also}")
                )
            if key.sha256 in seen_hashes:
                problems.append(
                    ConfigProblem(
                        file, f"keys.{i}.hash", f"same hash as key {seen_hashes[key.sha256]!r}"
                    )
                )
            seen_ids[key.id] = file
            seen_hashes[key.sha256] = key.id
            found.keys.append(key)
    return found, problems


def load_budgets(
    files: tuple[Path, ...], managed: Path | None, reader: Reader
) -> tuple[list[BudgetConfig], list[ConfigProblem]]:
    budgets: list[BudgetConfig] = []
    problems: list[ConfigProblem] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            data, _ = reader.document(file, "budgets", managed=file == managed)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for i, entry in enumerate(data["budgets"]):
            budget = _budget(entry, file)
            if budget.id in seen:
                also = also_in(seen[budget.id], file)
                problems.append(
                    ConfigProblem(
                        file, f"budgets.{i}.id", f"duplicate budget id {budget.id!r}{also}"
                    )
                )
            seen[budget.id] = file
            budgets.append(budget)
    return budgets, problems


def reference_problems(keys: list[KeyConfig], budgets: list[BudgetConfig]) -> list[ConfigProblem]:
    budget_ids = {b.id for b in budgets}
    if all(budget_ids.issuperset(key.budgets) for key in keys):
        return []  # the usual case, without counting each file's keys
    problems: list[ConfigProblem] = []
    index: dict[Path | None, int] = {}
    for key in keys:
        i = index[key.source] = index.get(key.source, -1) + 1
        problems.extend(
            ConfigProblem(key.source or Path("?"), f"keys.{i}.budgets", f"unknown budget {name!r}")
            for name in key.budgets
            if name not in budget_ids
        )
    return problems
