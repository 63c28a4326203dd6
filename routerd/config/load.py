"""Read every declarative file, validate it, and build the frozen config objects.

All fallible work of a (re)load happens here or in the modules it calls: reading and validating
each file (`documents.py`: YAML/JSON, `${ENV}` interpolation, one Draft 2020-12 schema per file),
the daemon file and the catalog (here), keys and budgets (`access.py`), users and price overrides
(`overrides.py`), cross-file checks, and the conversion into the dataclasses of `model.py`.
Errors are collected, never partially applied, and reported as `file: path: message` lines.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerd.config.access import load_budgets, load_keys, reference_problems
from routerd.config.documents import (
    ConfigError,
    ConfigProblem,
    DocumentCache,
    Overlay,
    Reader,
)
from routerd.config.model import (
    Catalog,
    DaemonConfig,
    Deployment,
    JournalConfig,
    LoadedConfig,
    LoggingConfig,
    ManagedKind,
    MetricsConfig,
    ModelConfig,
    Pricing,
    ProviderConfig,
    Timeouts,
)
from routerd.config.overrides import (
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

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "DocumentCache",
    "Overlay",
    "load_all",
    "load_catalog",
    "load_daemon",
    "with_managed",
]
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


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
    data, _ = Reader().document(path, "routerd")
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
        server=data.get("server", "http1"),
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
        transport=data.get("transport", "http1"),
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


def load_catalog(
    path: Path, default_timeouts: Timeouts, reader: Reader | None = None
) -> tuple[Catalog, list[str]]:
    reader = reader or Reader()
    _, missing = reader.document(path, "providers")
    build = functools.partial(_catalog, path, missing, default_timeouts)
    return reader.derived(path, "providers", build, depends_on=repr(default_timeouts))


def _catalog(
    path: Path,
    missing: dict[tuple[str, ...], str],
    default_timeouts: Timeouts,
    data: dict[str, Any],
) -> tuple[Catalog, list[str]]:
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


def with_managed(
    daemon: DaemonConfig, kind: ManagedKind, files: tuple[Path, ...], reader: Reader
) -> tuple[tuple[Path, ...], Path | None]:
    """The human `files` of `kind`, then its managed file if it exists (or is in the overlay)."""
    managed = daemon.managed_file(kind)
    if managed is None or not reader.has(managed):
        return files, managed
    return (*files, managed), managed


def _documents(
    files: tuple[Path, ...], managed: Path | None, reader: Reader, schema: str
) -> tuple[list[tuple[Path, dict[str, Any]]], list[ConfigProblem]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    problems: list[ConfigProblem] = []
    for file in files:
        try:
            docs.append((file, reader.document(file, schema, managed=file == managed)[0]))
        except ConfigError as exc:
            problems.extend(exc.problems)
    return docs, problems


def load_all(
    config_path: Path, overlay: Overlay | None = None, cache: DocumentCache | None = None
) -> LoadedConfig:
    """Load `routerd.yaml` and every file it names, then the managed files of `state_dir`
    (missing = empty); raise ConfigError listing every problem. `overlay` replaces the content of
    some files (a managed change is validated with it before it is written); `cache` skips
    files unchanged since the last load."""
    reader = Reader(overlay, cache)
    daemon = load_daemon(config_path)
    problems: list[ConfigProblem] = []
    catalog: Catalog | None = None
    warnings: list[str] = []
    try:
        catalog, warnings = load_catalog(daemon.providers_file, daemon.timeouts, reader)
    except ConfigError as exc:
        problems.extend(exc.problems)
    key_files, key_problems = load_keys(
        *with_managed(daemon, "keys", daemon.key_files, reader), reader
    )
    keys = key_files.keys
    budgets, budget_problems = load_budgets(
        *with_managed(daemon, "budgets", daemon.budget_files, reader), reader
    )
    problems += key_problems + budget_problems + reference_problems(keys, budgets)
    user_docs, user_doc_problems = _documents(
        *with_managed(daemon, "users", daemon.user_files, reader), reader, "users"
    )
    price_docs, price_doc_problems = _documents(
        *with_managed(daemon, "pricing", daemon.pricing_files, reader), reader, "pricing"
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
