"""Read every declarative file, validate it, and build the frozen config objects.

All fallible work of a (re)load happens here: YAML parsing, `${ENV}` interpolation, JSON Schema
validation (one Draft 2020-12 schema per file, shipped in the package), cross-file checks, and the
conversion into the dataclasses of `model.py`. Errors are collected, never partially applied, and
reported as `file: path: message` lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from routerd.config.model import (
    BudgetConfig,
    BudgetScope,
    Catalog,
    DaemonConfig,
    Deployment,
    JournalConfig,
    KeyConfig,
    LoadedConfig,
    LoggingConfig,
    ManagedKind,
    MetricsConfig,
    ModelConfig,
    Pricing,
    ProviderConfig,
    RateLimits,
    Timeouts,
)
from routerd.config.overrides import (
    also_in,
    apply_overrides,
    pricing_from,
    user_problems,
    users_from,
)
from routerd.config.routing import (
    parse_breaker,
    parse_preset,
    parse_retries,
    parse_timeout_overrides,
)

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# libyaml's C parser when PyYAML has it (faster loads; every admin change re-validates all).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: Path
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    """One or more problems in the files; nothing from them was applied."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@cache
def _validator(name: str) -> Draft202012Validator:
    text = resources.files("routerd.config").joinpath(f"schemas/{name}.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _json_path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, "", f"cannot read file: {exc.strerror}")]) from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(path, where, f"invalid YAML: {problem}")]) from None


def _interpolate(value: Any, path: tuple[str, ...], missing: dict[tuple[str, ...], str]) -> Any:
    """Replace `${VAR}` / `${VAR:-default}`; an unset VAR drops the field and is recorded."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            new = _interpolate(v, (*path, str(k)), missing)
            if new is not _UNSET:
                out[str(k)] = new
        return out
    if isinstance(value, list):
        items = [_interpolate(v, (*path, str(i)), missing) for i, v in enumerate(value)]
        return [item for item in items if item is not _UNSET]
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    if not isinstance(value, str) or "${" not in value:
        return value
    unset: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        env = os.environ.get(name)
        if env:
            return env
        if default is not None:
            return default
        unset.append(name)
        return ""

    result = _ENV_PATTERN.sub(substitute, value)
    if unset:
        missing[path] = unset[0]
        return _UNSET
    return result


_UNSET = object()


def _dates_as_text(value: Any) -> Any:
    """YAML timestamps as RFC 3339 text, as `_interpolate` does, but nothing else replaced."""
    if isinstance(value, dict):
        return {str(k): _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    return value


# Documents used instead of reading their paths (a managed change validated before it is written).
Overlay = Mapping[Path, Any]


def _load_document(
    path: Path, schema: str, overlay: Overlay | None = None, *, managed: bool = False
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Read (or take from `overlay`), interpolate and validate one file. Managed files are
    never interpolated: what the API stored is what is read back (no `${SECRET}` expansion)."""
    raw = overlay[path] if overlay is not None and path in overlay else _read_yaml(path)
    if raw is None:
        raw = {}
    missing: dict[tuple[str, ...], str] = {}
    data = _interpolate(raw, (), missing) if not managed else _dates_as_text(raw)
    if missing and schema in ("keys", "budgets", "users", "pricing"):
        raise ConfigError(
            [ConfigProblem(path, _json_path(p), f"{var} is not set") for p, var in missing.items()]
        )
    errors = sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(
            [ConfigProblem(path, _json_path(e.absolute_path), _describe(e)) for e in errors]
        )
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(path, "", "expected a mapping at the top")])
    return data, missing


_SECRET_FIELDS = frozenset({"master_key", "api_key"})


def _is_secret(path: Any) -> bool:
    parts = [str(p) for p in path]
    return bool(parts) and (parts[-1] in _SECRET_FIELDS or "headers" in parts[:-1])


def _describe(error: Any) -> str:
    if _is_secret(error.absolute_path):
        return f"invalid value (not shown: it is a secret): fails the {error.validator!r} rule"
    if error.validator == "additionalProperties":
        return str(error.message).replace("Additional properties are not allowed", "unknown field")
    if error.validator == "oneOf" and error.context:
        best = min(error.context, key=lambda e: len(list(e.relative_path)))
        return f"{error.message[:120]}: {best.message[:160]}"
    return str(error.message)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (base.parent / p).resolve()


def _paths(base: Path, value: str | list[str] | None) -> tuple[Path, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    return tuple(_resolve(base, v) for v in items)


def _timeouts(data: dict[str, Any] | None, base: Timeouts) -> Timeouts:
    if not data:
        return base
    return Timeouts(
        connect=float(data.get("connect", base.connect)),
        first_byte=float(data.get("first_byte", base.first_byte)),
        idle=float(data.get("idle", base.idle)),
        total=data.get("total", base.total),
    )


def _pricing(data: dict[str, Any]) -> Pricing:
    return Pricing(
        prompt=data["prompt"],
        completion=data["completion"],
        cached_prompt=data.get("cached_prompt"),
        cache_write=data.get("cache_write"),
    )


def _parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def load_daemon(path: Path) -> DaemonConfig:
    path = path.resolve()
    data, _ = _load_document(path, "routerd")
    host, port = _parse_listen(data.get("listen", DEFAULT_LISTEN))
    master = data.get("master_key")
    journal = data.get("journal") or {"dir": "../var/usage"}
    logging_data = data.get("logging") or {}
    metrics_data = data.get("metrics") or {}
    return DaemonConfig(
        path=path,
        listen_host=host,
        listen_port=port,
        providers_file=_resolve(path, data["providers"]),
        key_files=_paths(path, data.get("keys")),
        budget_files=_paths(path, data.get("budgets")),
        user_files=_paths(path, data.get("users")),
        pricing_files=_paths(path, data.get("pricing")),
        state_dir=_resolve(path, data["state_dir"]) if data.get("state_dir") else None,
        master_key_sha256=hashlib.sha256(master.encode()).hexdigest() if master else None,
        journal=JournalConfig(
            dir=_resolve(path, journal["dir"]),
            fsync=journal.get("fsync", "interval"),
            fsync_interval_seconds=float(journal.get("fsync_interval_seconds", 1.0)),
            queue_size=int(journal.get("queue_size", 10000)),
            max_file_bytes=journal.get("max_file_bytes"),
        ),
        timeouts=_timeouts(data.get("timeouts"), Timeouts()),
        max_body_bytes=int(data.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)),
        shutdown_grace_seconds=float(data.get("shutdown_grace_seconds", 30.0)),
        logging=LoggingConfig(
            level=logging_data.get("level", "info"), format=logging_data.get("format", "json")
        ),
        metrics=MetricsConfig(
            enabled=metrics_data.get("enabled", True),
        ),
        retries=parse_retries(data.get("retries")),
    )


def _provider(
    name: str, data: dict[str, Any], missing: dict[tuple[str, ...], str], default: Timeouts
) -> ProviderConfig:
    unset = sorted({var for p, var in missing.items() if p[:2] == ("providers", name)})
    reason = None
    if data.get("disabled"):
        reason = "disabled in the file"
    elif unset:
        reason = f"{', '.join(unset)} is not set"
    return ProviderConfig(
        name=name,
        type=data["type"],
        base_url=data.get("base_url", "").rstrip("/") or None,
        api_key=data.get("api_key"),
        headers=tuple(sorted((data.get("headers") or {}).items())),
        pool_size=int(data.get("pool_size", 100)),
        timeouts=_timeouts(data.get("timeouts"), default),
        api_version=data.get("api_version"),
        enabled=reason is None,
        disabled_reason=reason,
        max_concurrency=data.get("max_concurrency"),
        queue_timeout=float(data.get("queue_timeout", 1.0)),
        breaker=parse_breaker(data.get("circuit_breaker")),
    )


def _model(slug: str, data: dict[str, Any]) -> ModelConfig:
    pricing = data["pricing"]
    return ModelConfig(
        id=slug,
        pricing=_pricing(pricing),
        deployments=tuple(
            Deployment(
                provider=d["provider"],
                model=d["model"],
                weight=float(d.get("weight", 1)),
                pricing=_pricing(d["pricing"]) if "pricing" in d else None,
            )
            for d in data["deployments"]
        ),
        context_length=data.get("context_length"),
        max_output_tokens=data.get("max_output_tokens"),
        features=tuple(data.get("features") or ()),
        fallbacks=tuple(data.get("fallbacks") or ()),
        display_name=data.get("display_name"),
        strategy=data.get("strategy", "weighted"),
        timeouts=parse_timeout_overrides(data.get("timeouts")),
    )


def _catalog_problems(path: Path, data: dict[str, Any]) -> Iterator[ConfigProblem]:
    providers = data["providers"]
    models = data["models"]
    for slug, model in models.items():
        for i, dep in enumerate(model["deployments"]):
            if dep["provider"] not in providers:
                yield ConfigProblem(
                    path,
                    f"models.{slug}.deployments.{i}.provider",
                    f"unknown provider {dep['provider']!r}",
                )
        for i, target in enumerate(model.get("fallbacks") or ()):
            if target not in models:
                yield ConfigProblem(
                    path, f"models.{slug}.fallbacks.{i}", f"unknown model {target!r}"
                )
    aliases = data.get("aliases") or {}
    for alias, target in aliases.items():
        if alias in models:
            yield ConfigProblem(path, f"aliases.{alias}", "alias shadows a model of the same name")
        if target not in models:
            yield ConfigProblem(path, f"aliases.{alias}", f"unknown model {target!r}")
    for name, preset in (data.get("presets") or {}).items():
        listed = ([preset["model"]] if "model" in preset else []) + list(preset.get("models") or [])
        if not listed:
            yield ConfigProblem(path, f"presets.{name}", "needs 'model' or 'models'")
        for target in listed:
            if target not in models and target not in aliases:
                yield ConfigProblem(path, f"presets.{name}", f"unknown model {target!r}")


def load_catalog(path: Path, default_timeouts: Timeouts) -> tuple[Catalog, list[str]]:
    data, missing = _load_document(path, "providers")
    problems = list(_catalog_problems(path, data))
    if problems:
        raise ConfigError(problems)
    providers = {
        name: _provider(name, p, missing, default_timeouts) for name, p in data["providers"].items()
    }
    warnings = [
        f"provider {p.name} disabled: {p.disabled_reason}"
        for p in providers.values()
        if not p.enabled
    ]
    models = {slug: _model(slug, m) for slug, m in data["models"].items()}
    presets = {name: parse_preset(name, p) for name, p in (data.get("presets") or {}).items()}
    aliases = dict(data.get("aliases") or {})
    catalog = Catalog(providers=providers, models=models, aliases=aliases, presets=presets)
    return catalog, warnings


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
class _KeyFiles:
    keys: list[KeyConfig] = field(default_factory=list)
    user_limits: dict[str, RateLimits] = field(default_factory=dict)
    tag_limits: dict[str, RateLimits] = field(default_factory=dict)


def _group_limits(file: Path, data: dict[str, Any], found: _KeyFiles) -> list[ConfigProblem]:
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


def _load_keys(
    files: tuple[Path, ...], managed: Path | None = None, overlay: Overlay | None = None
) -> tuple[_KeyFiles, list[ConfigProblem]]:
    found = _KeyFiles()
    keys = found.keys
    problems: list[ConfigProblem] = []
    seen_ids: dict[str, Path] = {}
    seen_hashes: dict[str, str] = {}
    for file in files:
        try:
            data, _ = _load_document(file, "keys", overlay, managed=file == managed)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        problems += _group_limits(file, data, found)
        for i, entry in enumerate(data["keys"]):
            try:
                key = _key(entry, file)
            except ValueError:  # the schema's date-time format is not checked by jsonschema
                problems.append(
                    ConfigProblem(file, f"keys.{i}.expires_at", "not an RFC 3339 date-time")
                )
                continue
            if key.id in seen_ids:
                problems.append(
                    ConfigProblem(
                        file,
                        f"keys.{i}.id",
                        f"duplicate key id {key.id!r}{also_in(seen_ids[key.id], file)}",
                    )
                )
            if key.sha256 in seen_hashes:
                problems.append(
                    ConfigProblem(
                        file, f"keys.{i}.hash", f"same hash as key {seen_hashes[key.sha256]!r}"
                    )
                )
            seen_ids[key.id] = file
            seen_hashes[key.sha256] = key.id
            keys.append(key)
    return found, problems


def _load_budgets(
    files: tuple[Path, ...], managed: Path | None = None, overlay: Overlay | None = None
) -> tuple[list[BudgetConfig], list[ConfigProblem]]:
    budgets: list[BudgetConfig] = []
    problems: list[ConfigProblem] = []
    seen: dict[str, Path] = {}
    for file in files:
        try:
            data, _ = _load_document(file, "budgets", overlay, managed=file == managed)
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


def _reference_problems(keys: list[KeyConfig], budgets: list[BudgetConfig]) -> list[ConfigProblem]:
    budget_ids = {b.id for b in budgets}
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


def with_managed(
    daemon: DaemonConfig, kind: ManagedKind, files: tuple[Path, ...], overlay: Overlay | None
) -> tuple[tuple[Path, ...], Path | None]:
    """The human `files` of `kind`, then its managed file if it exists (or is in `overlay`)."""
    managed = daemon.managed_file(kind)
    if managed is None or not (managed.exists() or (overlay is not None and managed in overlay)):
        return files, managed
    return (*files, managed), managed


def _documents(
    files: tuple[Path, ...], managed: Path | None, overlay: Overlay | None, schema: str
) -> tuple[list[tuple[Path, dict[str, Any]]], list[ConfigProblem]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    problems: list[ConfigProblem] = []
    for file in files:
        try:
            docs.append((file, _load_document(file, schema, overlay, managed=file == managed)[0]))
        except ConfigError as exc:
            problems.extend(exc.problems)
    return docs, problems


def load_all(config_path: Path, overlay: Overlay | None = None) -> LoadedConfig:
    """Load `routerd.yaml` and every file it names, then the managed files of `state_dir`
    (missing = empty); raise ConfigError listing every problem. `overlay` replaces the content of
    some files (a managed change is validated with it before it is written)."""
    daemon = load_daemon(config_path)
    problems: list[ConfigProblem] = []
    catalog: Catalog | None = None
    warnings: list[str] = []
    try:
        catalog, warnings = load_catalog(daemon.providers_file, daemon.timeouts)
    except ConfigError as exc:
        problems.extend(exc.problems)
    key_files, key_problems = _load_keys(
        *with_managed(daemon, "keys", daemon.key_files, overlay), overlay
    )
    keys = key_files.keys
    budgets, budget_problems = _load_budgets(
        *with_managed(daemon, "budgets", daemon.budget_files, overlay), overlay
    )
    problems += key_problems + budget_problems + _reference_problems(keys, budgets)
    user_docs, user_doc_problems = _documents(
        *with_managed(daemon, "users", daemon.user_files, overlay), overlay, "users"
    )
    price_docs, price_doc_problems = _documents(
        *with_managed(daemon, "pricing", daemon.pricing_files, overlay), overlay, "pricing"
    )
    users, found = users_from(user_docs)
    found += user_problems(users, {b.id for b in budgets})
    overrides, price_problems = pricing_from(price_docs, catalog.models if catalog else None)
    problems += user_doc_problems + price_doc_problems
    problems += [ConfigProblem(*p) for p in found + price_problems]
    if problems or catalog is None:
        raise ConfigError(problems)
    listed = {name for key in keys for name in key.budgets}
    warnings += [
        f"budget {b.id} has no scope and no key lists it: it counts nothing"
        for b in budgets
        if b.scope.kind == "listed" and b.id not in listed
    ]
    return LoadedConfig(
        daemon=daemon,
        catalog=apply_overrides(catalog, overrides),
        keys=tuple(keys),
        budgets=tuple(budgets),
        warnings=tuple(warnings),
        user_limits=key_files.user_limits,
        tag_limits=key_files.tag_limits,
        users=tuple(users),
        price_overrides=tuple(overrides),
    )
