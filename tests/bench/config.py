"""The benchmark's routerd configurations: the all-features-on bench config and the big one.

`write_bench_config`: one fake OpenAI provider (the bench upstream), a passthrough model, a paced
streaming model (on a second provider, the upstream's paced port, when one is given), and one key
with every per-request feature on: rpm/tpm/concurrency limits and budgets (a key budget, a tag
budget and a global one, all far too big to ever refuse), metrics on, journal on with fsync
`interval`. `write_big_config`: the same daemon with 10,000 keys and 1,000 models (plus the bench
ones) for the reload rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MODEL = "bench/gpt-bench"
PACED_MODEL = "bench/gpt-paced"
API_KEY = "sk-rd-bench-0123456789abcdef0123456789"
KEY_LIMITS = "{rpm: 1000000000, tpm: 1000000000000, concurrency: 100000}"
HUGE_USD = 1_000_000_000


def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _providers(upstream_port: int, extra_models: list[str], paced_port: int | None = None) -> str:
    paced = [
        "  fake-paced:",
        "    type: openai",
        f"    base_url: http://127.0.0.1:{paced_port}/v1",
        "    api_key: x",
        "    pool_size: 4096",
    ]
    lines = [
        "providers:",
        "  fake:",
        "    type: openai",
        f"    base_url: http://127.0.0.1:{upstream_port}/v1",
        "    api_key: x",
        "    pool_size: 4096",
        *(paced if paced_port is not None else []),
        "models:",
        f"  {MODEL}:",
        "    pricing: {prompt: 0.4, completion: 1.6}",
        "    deployments: [{provider: fake, model: gpt-bench}]",
        f"  {PACED_MODEL}:",
        "    pricing: {prompt: 0.4, completion: 1.6}",
        f"    deployments: [{{provider: {'fake' if paced_port is None else 'fake-paced'}, "
        "model: gpt-paced}]",
        *extra_models,
    ]
    return "\n".join(lines) + "\n"


def _daemon(tmp: Path, listen_port: int, log_level: str) -> str:
    return (
        f"listen: 127.0.0.1:{listen_port}\n"
        "providers: providers.yaml\n"
        "keys: keys.yaml\n"
        "budgets: budgets.yaml\n"
        "journal:\n"
        f"  dir: {tmp / 'journal'}\n"
        "  fsync: interval\n"
        "shutdown_grace_seconds: 2\n"
        "logging:\n"
        f"  level: {log_level}\n"
        "  format: json\n"
        "metrics:\n"
        "  enabled: true\n"
    )


BENCH_KEY = (
    "  - id: bench\n"
    f'    hash: "sha256:{_key_hash(API_KEY)}"\n'
    "    user: bench-user\n"
    "    tags: [bench]\n"
    '    models: ["*"]\n'
    f"    limits: {KEY_LIMITS}\n"
    "    budgets: [bench-monthly]\n"
)

BENCH_BUDGETS = (
    f"  - {{id: bench-monthly, limit_usd: {HUGE_USD}, period: monthly, scope: {{key: bench}}}}\n"
    f"  - {{id: bench-tag-total, limit_usd: {HUGE_USD}, period: total, scope: {{tag: bench}}}}\n"
    f"  - {{id: global-daily, limit_usd: {HUGE_USD}, period: daily, scope: global}}\n"
)


def write_bench_config(
    tmp: Path,
    upstream_port: int,
    listen_port: int,
    log_level: str = "warning",
    paced_port: int | None = None,
) -> Path:
    """The all-features-on config in `tmp`; returns the path of routerd.yaml. With `paced_port`,
    the paced model goes to a second provider there (the upstream's raw paced server)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "providers.yaml").write_text(_providers(upstream_port, [], paced_port))
    (tmp / "keys.yaml").write_text("keys:\n" + BENCH_KEY)
    (tmp / "budgets.yaml").write_text("budgets:\n" + BENCH_BUDGETS)
    config = tmp / "routerd.yaml"
    config.write_text(_daemon(tmp, listen_port, log_level))
    return config


def write_big_config(
    tmp: Path, upstream_port: int, listen_port: int, keys: int = 10_000, models: int = 1_000
) -> Path:
    """`keys` keys and `models` models (50 teams); 9 keys in 10 are limited to their team's
    models, 1 in 10 may use every model; every key has limits and a team budget."""
    tmp.mkdir(parents=True, exist_ok=True)
    teams = 50
    extra = []
    for i in range(models):
        extra.append(f"  team-{i % teams:02d}/m-{i:04d}:")
        extra.append("    pricing: {prompt: 0.15, completion: 0.6}")
        extra.append(f"    deployments: [{{provider: fake, model: up-{i:04d}}}]")
    (tmp / "providers.yaml").write_text(_providers(upstream_port, extra))
    entries = ["keys:\n", BENCH_KEY]
    for i in range(1, keys):
        team = f"team-{i % teams:02d}"
        models_line = "" if i % 10 == 0 else f'    models: ["{team}/*"]\n'
        entries.append(
            f"  - id: key-{i:05d}\n"
            f'    hash: "sha256:{_key_hash(f"bench-key-{i}")}"\n'
            f"    user: user-{i % 500:03d}\n"
            f"    tags: [{team}]\n"
            f"{models_line}"
            "    limits: {rpm: 600, tpm: 200000, concurrency: 16}\n"
            f"    budgets: [{team}-monthly]\n"
        )
    (tmp / "keys.yaml").write_text("".join(entries))
    budgets = ["budgets:\n", BENCH_BUDGETS]
    budgets += [
        f"  - {{id: team-{t:02d}-monthly, limit_usd: 500, period: monthly, "
        f"scope: {{tag: team-{t:02d}}}}}\n"
        for t in range(teams)
    ]
    (tmp / "budgets.yaml").write_text("".join(budgets))
    config = tmp / "routerd.yaml"
    config.write_text(_daemon(tmp, listen_port, "info"))
    return config
