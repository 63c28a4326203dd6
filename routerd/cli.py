"""The `routerd` command line: serve, `check` (validate like `nginx -t`), `usage`, `--version`,
and (in `cli_admin.py`) `keys`, `users`, `budgets` on the managed files.

`check`, `usage` and the admin commands never import the server (nor aiohttp); `serve` imports it
lazily.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from routerd import __version__, cli_admin

DEFAULT_CONFIG = "config/routerd.yaml"
_COMMANDS = frozenset({"serve", "check", "keys", "users", "budgets", "usage"})


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

    cli_admin.add_commands(sub)
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
    if args.command in ("keys", "users", "budgets"):
        return cli_admin.run(args)
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
    out.append(f"listen {daemon.listen_host}:{daemon.listen_port} (server: {daemon.server})")
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
    out.append(f"users: {len(loaded.users)}" + _ids(u.id for u in loaded.users))
    out.append(
        f"price overrides: {len(loaded.price_overrides)}"
        + _ids(o.model for o in loaded.price_overrides)
    )
    out.append(f"state_dir {daemon.state_dir or '(none: the management API cannot write)'}")
    shown = {f"provider {p.name} disabled: {p.disabled_reason}" for p in catalog.providers.values()}
    out.extend(f"warning: {w}" for w in loaded.warnings if w not in shown)
    out.append("OK")
    print("\n".join(out))
    return 0


def _ids(ids: Iterable[str]) -> str:
    items = list(ids)
    return f" ({', '.join(items)})" if items else ""
