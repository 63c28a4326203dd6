"""The `routerd` command line: serve, `check` (validate like `nginx -t`), `keys new`, `--version`.

`check` and `keys` never import the server (nor aiohttp); `serve` imports it lazily.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from routerd import __version__

DEFAULT_CONFIG = "config/routerd.yaml"
KEY_PREFIX = "sk-rd-"
_COMMANDS = frozenset({"serve", "check", "keys", "usage"})
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"path of routerd.yaml (default: {DEFAULT_CONFIG})",
    )


def _add_listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="listen address (overrides `listen` in the file)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routerd",
        description="routerd: a self-hosted LLM gateway. Without a command it serves.",
    )
    parser.add_argument("--version", action="version", version=f"routerd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (the default)")
    _add_config(serve)
    _add_listen(serve)

    check = sub.add_parser("check", help="validate every file and print a summary (exit 0 / 1)")
    _add_config(check)

    keys = sub.add_parser("keys", help="manage client keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    new = keys_sub.add_parser(
        "new", help="generate a key; print it once and the keys.yaml entry with its hash"
    )
    new.add_argument("--id", required=True, help="key id (letters, digits, . _ -)")
    new.add_argument("--user", help="owner user")
    new.add_argument("--models", nargs="+", metavar="GLOB", help="allowed model globs")
    new.add_argument("--tags", nargs="+", metavar="TAG", help="tags (budgets can scope by tag)")
    usage = sub.add_parser("usage", help="aggregate the usage journal offline (a table or JSON)")
    _add_config(usage)
    usage.add_argument("--by", choices=["key", "user", "tag", "model", "day"], default="key")
    usage.add_argument("--from", dest="since", metavar="YYYY-MM-DD", help="first UTC day")
    usage.add_argument("--to", dest="until", metavar="YYYY-MM-DD", help="last UTC day")
    usage.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routerd", add_help=False)
    _add_config(parser)
    _add_listen(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if (not args_list or args_list[0] not in _COMMANDS) and not any(
        a in ("-h", "--help", "--version") for a in args_list
    ):
        # `routerd -c FILE [--listen ...]`: serving is the default command.
        args_list = ["serve", *args_list]
    args = parser.parse_args(args_list)
    if args.command == "check":
        return _check(Path(args.config))
    if args.command == "usage":
        return _usage(Path(args.config), args.by, args.since, args.until, args.json)
    if args.command == "keys":
        return _keys_new(args.id, args.user, args.models, args.tags)
    return _serve(Path(args.config), args.listen)


def _usage(config: Path, by: str, since: str | None, until: str | None, as_json: bool) -> int:
    import json
    from datetime import date

    from routerd.config.load import ConfigError, load_daemon
    from routerd.metering.journal import iter_journal
    from routerd.metering.report import aggregate, format_table

    try:
        daemon = load_daemon(config)
        first = date.fromisoformat(since) if since else None
        last = date.fromisoformat(until) if until else None
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"routerd usage: {exc} (use YYYY-MM-DD)", file=sys.stderr)
        return 2
    records = iter_journal(daemon.journal.dir, first, last)
    rows = aggregate(records, by, first, last)  # type: ignore[arg-type]
    if as_json:
        for row in rows:
            print(json.dumps(row.as_dict()))
    else:
        print(format_table(rows, by))  # type: ignore[arg-type]
    return 0


def _serve(config: Path, listen: str | None) -> int:
    from routerd.server.app import serve

    return serve(config, listen)


def _check(config: Path) -> int:
    from routerd.config.load import ConfigError, load_all

    try:
        loaded = load_all(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{config}: configuration is invalid", file=sys.stderr)
        return 1

    catalog = loaded.catalog
    daemon = loaded.daemon
    out: list[str] = [f"config {daemon.path}"]
    out.append(f"listen {daemon.listen_host}:{daemon.listen_port}")
    out.append("admin API " + ("on" if daemon.master_key_sha256 else "off (no master_key)"))
    enabled = {name for name, p in catalog.providers.items() if p.enabled}
    out.append(f"providers: {len(catalog.providers)} ({len(enabled)} enabled)")
    for name, provider in sorted(catalog.providers.items()):
        state = "enabled" if provider.enabled else f"disabled: {provider.disabled_reason}"
        out.append(f"  {name} ({provider.type}): {state}")
    servable = sorted(
        slug
        for slug, model in catalog.models.items()
        if any(d.provider in enabled for d in model.deployments)
    )
    out.append(f"models: {len(catalog.models)} ({len(servable)} servable)")
    out.extend(f"  {slug}" for slug in servable)
    out.append(f"aliases: {len(catalog.aliases)}")
    for alias, target in sorted(catalog.aliases.items()):
        mark = "" if target in servable else " (not servable)"
        out.append(f"  {alias} -> {target}{mark}")
    out.append(f"keys: {len(loaded.keys)}" + _ids(k.id for k in loaded.keys))
    out.append(f"budgets: {len(loaded.budgets)}" + _ids(b.id for b in loaded.budgets))
    shown = {f"provider {p.name} disabled: {p.disabled_reason}" for p in catalog.providers.values()}
    out.extend(f"warning: {w}" for w in loaded.warnings if w not in shown)
    out.append("OK")
    print("\n".join(out))
    return 0


def _ids(ids: Iterable[str]) -> str:
    items = list(ids)
    return f" ({', '.join(items)})" if items else ""


def _keys_new(
    key_id: str, user: str | None, models: list[str] | None, tags: list[str] | None
) -> int:
    import yaml

    if not _KEY_ID.fullmatch(key_id):
        print(
            f"routerd keys new: invalid --id {key_id!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)",
            file=sys.stderr,
        )
        return 2
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    entry: dict[str, object] = {
        "id": key_id,
        "hash": "sha256:" + hashlib.sha256(plaintext.encode("utf-8")).hexdigest(),
    }
    if user:
        entry["user"] = user
    if tags:
        entry["tags"] = list(dict.fromkeys(tags))
    if models:
        entry["models"] = models
    snippet = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None, width=100)
    print(plaintext)
    print(
        "# ^ the new key. It is shown only this once and is not stored anywhere: give it to its\n"
        "#   owner now. Add the entry below under `keys:` in keys.yaml, then run `routerd check`\n"
        "#   and reload the daemon (kill -HUP)."
    )
    print("\n".join("  " + line for line in snippet.rstrip("\n").splitlines()))
    return 0
