"""`routerd keys|users|budgets ...`: the same managed files as the admin API, from a shell.

Works with the daemon stopped: each change goes through `ManagedStore.commit` (state lock,
whole-config validation, atomic write). Afterwards, if `ROUTERD_MASTER_KEY` is set, it asks a
running daemon to reload (`POST /admin/reload` at `ROUTERD_URL` or the `listen` address of
routerd.yaml); otherwise, or when no daemon answers, it says when the change applies.
`keys new --print-only` keeps the old behaviour: print a key and an entry for a human keys file.
Never imports the server (nor aiohttp).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from routerd.config.model import DaemonConfig, LoadedConfig
from routerd.managed import entries
from routerd.managed.store import Docs

DEFAULT_CONFIG = "config/routerd.yaml"
T = TypeVar("T")
Mutation = Callable[[Docs, LoadedConfig], T]


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE")


def _command(sub: Any, name: str, help_text: str, *ids: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    _config_arg(parser)
    for dest in ids:
        parser.add_argument(dest, help=f"the {dest.removesuffix('_id')}'s id")
    return parser


def add_commands(sub: Any) -> None:
    """Add `keys`, `users` and `budgets` to the top-level subparsers."""
    keys = sub.add_parser("keys", help="manage client keys (managed keys.yaml)")
    ks = keys.add_subparsers(dest="action", metavar="COMMAND", required=True)
    new = _command(ks, "new", "create a key; print it once (only its sha256 is stored)")
    new.add_argument("--id", required=True, help="key id (letters, digits, . _ -)")
    new.add_argument("--user", help="owner user")
    new.add_argument("--name", help="a display name")
    new.add_argument("--models", nargs="+", metavar="GLOB", help="allowed model globs")
    new.add_argument("--tags", nargs="+", metavar="TAG", help="tags (budgets can scope by tag)")
    new.add_argument("--budgets", nargs="+", metavar="ID", help="budgets that apply to the key")
    new.add_argument("--expires-at", metavar="RFC3339", help="e.g. 2027-01-01T00:00:00Z")
    new.add_argument(
        "--print-only", action="store_true", help="write nothing: print an entry for keys.yaml"
    )
    _command(ks, "list", "list every key (human and managed files)").add_argument(
        "--json", action="store_true"
    )
    _command(ks, "revoke", "delete a managed key: it stops working at once", "key_id")
    _command(ks, "rotate", "give a managed key a new secret (printed once)", "key_id")

    users = sub.add_parser("users", help="manage users (managed users.yaml)")
    us = users.add_subparsers(dest="action", metavar="COMMAND", required=True)
    add = _command(us, "add", "define a user", "user_id")
    add.add_argument("--alias")
    add.add_argument("--budget", metavar="BUDGET_ID", help="a budget capping this user")
    add.add_argument("--blocked", action="store_true", help="create it blocked")
    _command(us, "list", "list users").add_argument("--json", action="store_true")
    _command(us, "block", "block a user: its keys get 403", "user_id")
    _command(us, "unblock", "unblock a user", "user_id")
    _command(us, "rm", "delete a managed user", "user_id")

    budgets = sub.add_parser("budgets", help="manage budgets (managed budgets.yaml)")
    bs = budgets.add_subparsers(dest="action", metavar="COMMAND", required=True)
    put = _command(bs, "set", "create or replace a managed budget", "budget_id")
    put.add_argument("--limit-usd", type=float, required=True)
    put.add_argument("--period", required=True, help="daily | weekly | monthly | total | <N>s")
    put.add_argument(
        "--scope", required=True, help="global | per_user | key:ID | user:ID | tag:T | model:GLOB"
    )
    _command(bs, "list", "list budgets").add_argument("--json", action="store_true")
    _command(bs, "rm", "delete a managed budget", "budget_id")


def run(args: argparse.Namespace) -> int:
    handler = _HANDLERS[(args.command, args.action)]
    return handler(args)


def _fail(args: argparse.Namespace, message: str, code: int = 1) -> int:
    print(f"routerd {args.command} {args.action}: {message}", file=sys.stderr)
    return code


def _load(args: argparse.Namespace) -> tuple[DaemonConfig, LoadedConfig] | None:
    from routerd.config.load import ConfigError, load_all

    try:
        loaded = load_all(Path(args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    return loaded.daemon, loaded


def _change(args: argparse.Namespace, mutate: Mutation[T], done: Callable[[T], str]) -> int:
    """Apply one change to the managed files, print `done(result)`, then tell the daemon."""
    from routerd.errors import RouterdError
    from routerd.managed.store import ChangeRejected, ManagedStore

    loaded = _load(args)
    if loaded is None:
        return 1
    daemon, current = loaded
    store = ManagedStore.of(daemon)
    if store is None:
        return _fail(args, f"{daemon.path} has no state_dir: set one to manage files")
    try:
        _, result = store.commit(lambda docs: mutate(docs, current), lambda config: config)
    except ChangeRejected as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return _fail(args, "the change was not written")
    except RouterdError as exc:
        return _fail(args, exc.message)
    print(done(result))
    _notify(daemon)
    return 0


def _notify(daemon: DaemonConfig) -> None:
    """Ask a running daemon to reload, or say when the change applies."""
    master = os.environ.get("ROUTERD_MASTER_KEY")
    host = daemon.listen_host if daemon.listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    url = os.environ.get("ROUTERD_URL") or f"http://{host}:{daemon.listen_port}"
    if ":" in host and not os.environ.get("ROUTERD_URL"):
        url = f"http://[{host}]:{daemon.listen_port}"
    if not master:
        print(
            "ROUTERD_MASTER_KEY is not set, so no daemon was told: a running routerd applies this "
            "on reload (kill -HUP <pid>), a stopped one at its next start."
        )
        return
    request = urllib.request.Request(
        url.rstrip("/") + "/admin/reload",
        method="POST",
        headers={"Authorization": f"Bearer {master}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            generation = json.loads(response.read()).get("config_generation")
        print(f"routerd at {url} reloaded (config generation {generation}).")
    except urllib.error.HTTPError as exc:
        print(f"warning: routerd at {url} refused the reload ({exc.code}).", file=sys.stderr)
    except (urllib.error.URLError, OSError):
        print(f"routerd is not running at {url}: the change applies at its next start.")


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def _source(source: Path | None, daemon: DaemonConfig, kind: Any) -> str:
    if source is None:
        return "implicit"
    return "managed" if source == daemon.managed_file(kind) else f"file:{source}"


def _key_entry(args: argparse.Namespace, digest: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": args.id, "hash": digest}
    if args.user:
        entry["user"] = args.user
    if args.tags:
        entry["tags"] = list(dict.fromkeys(args.tags))
    if args.models:
        entry["models"] = args.models
    if getattr(args, "budgets", None):
        entry["budgets"] = list(dict.fromkeys(args.budgets))
    if getattr(args, "expires_at", None):
        entry["expires_at"] = args.expires_at
    if getattr(args, "name", None):
        entry["name"] = args.name
    return entry


def _keys_new(args: argparse.Namespace) -> int:
    if not _KEY_ID.fullmatch(args.id):
        return _fail(
            args,
            f"invalid --id {args.id!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)",
            2,
        )
    plaintext, digest = entries.new_secret()
    entry = _key_entry(args, digest)
    if args.print_only:
        return _print_entry(plaintext, entry)

    def mutate(docs: Docs, current: LoadedConfig) -> str:
        if args.user:
            entries.ensure_user(docs, current, args.user)
        entries.add(docs, current, "keys", entry)
        return str(docs.paths["keys"])

    return _change(
        args,
        mutate,
        lambda path: (
            f"{plaintext}\n# ^ the new key {args.id!r}, shown only this once: give it to"
            f" its owner now.\n#   Only its sha256 is stored, in {path}."
        ),
    )


def _print_entry(plaintext: str, entry: dict[str, Any]) -> int:
    import yaml

    snippet = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None, width=100)
    print(plaintext)
    print(
        "# ^ the new key. It is shown only this once and is not stored anywhere: give it to its\n"
        "#   owner now. Add the entry below under `keys:` in keys.yaml, then run `routerd check`\n"
        "#   and reload the daemon (kill -HUP)."
    )
    print("\n".join("  " + line for line in snippet.rstrip("\n").splitlines()))
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    plaintext, digest = entries.new_secret()

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.update(docs, current, "keys", args.key_id, {"hash": digest})

    return _change(
        args,
        mutate,
        lambda _: (
            f"{plaintext}\n# ^ the new secret of key {args.key_id!r}, shown only this once;"
            " the old one\n#   stops working when the daemon reloads."
        ),
    )


def _keys_revoke(args: argparse.Namespace) -> int:
    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "keys", args.key_id)

    return _change(args, mutate, lambda _: f"key {args.key_id!r} revoked.")


def _keys_list(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    daemon, config = loaded
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "user": k.user,
            "active": not k.disabled,
            "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            "models": list(k.models),
            "source": _source(k.source, daemon, "keys"),
        }
        for k in config.keys
    ]
    _print_rows(rows, ("id", "name", "user", "active", "expires_at", "models", "source"), args.json)
    return 0


def _users_add(args: argparse.Namespace) -> int:
    entry: dict[str, Any] = {"id": args.user_id}
    if args.alias:
        entry["alias"] = args.alias
    if args.budget:
        entry["budget_id"] = args.budget
    if args.blocked:
        entry["blocked"] = True

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.add(docs, current, "users", entry)

    return _change(args, mutate, lambda _: f"user {args.user_id!r} added.")


def _users_set_blocked(args: argparse.Namespace) -> int:
    blocked = args.action == "block"

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.update(docs, current, "users", args.user_id, {"blocked": True if blocked else None})

    return _change(
        args, mutate, lambda _: f"user {args.user_id!r} {'blocked' if blocked else 'unblocked'}."
    )


def _users_rm(args: argparse.Namespace) -> int:
    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "users", args.user_id)

    return _change(args, mutate, lambda _: f"user {args.user_id!r} removed.")


def _users_list(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    daemon, config = loaded
    rows = [
        {
            "id": u.id,
            "alias": u.alias,
            "blocked": u.blocked,
            "budget_id": u.budget_id,
            "source": _source(u.source, daemon, "users"),
        }
        for u in config.users
    ]
    _print_rows(rows, ("id", "alias", "blocked", "budget_id", "source"), args.json)
    return 0


def _scope(text: str) -> str | dict[str, str] | None:
    if text in ("global", "per_user"):
        return text
    kind, sep, value = text.partition(":")
    if sep and value and kind in ("key", "user", "tag", "model"):
        return {kind: value}
    return None


def _budgets_set(args: argparse.Namespace) -> int:
    scope = _scope(args.scope)
    if scope is None:
        return _fail(args, f"invalid --scope {args.scope!r}", 2)
    entry = {
        "id": args.budget_id,
        "limit_usd": args.limit_usd,
        "period": args.period,
        "scope": scope,
    }

    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.upsert(docs, current, "budgets", entry)

    return _change(args, mutate, lambda _: f"budget {args.budget_id!r} set.")


def _budgets_rm(args: argparse.Namespace) -> int:
    def mutate(docs: Docs, current: LoadedConfig) -> None:
        entries.remove(docs, current, "budgets", args.budget_id)

    return _change(args, mutate, lambda _: f"budget {args.budget_id!r} removed.")


def _budgets_list(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    daemon, config = loaded
    rows = [
        {
            "id": b.id,
            "limit_usd": b.limit_usd,
            "period": b.period,
            "scope": b.scope.kind if b.scope.value is None else f"{b.scope.kind}:{b.scope.value}",
            "source": _source(b.source, daemon, "budgets"),
        }
        for b in config.budgets
    ]
    _print_rows(rows, ("id", "limit_usd", "period", "scope", "source"), args.json)
    return 0


_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HANDLERS: dict[tuple[str, str], Callable[[argparse.Namespace], int]] = {
    ("keys", "new"): _keys_new,
    ("keys", "list"): _keys_list,
    ("keys", "revoke"): _keys_revoke,
    ("keys", "rotate"): _keys_rotate,
    ("users", "add"): _users_add,
    ("users", "list"): _users_list,
    ("users", "block"): _users_set_blocked,
    ("users", "unblock"): _users_set_blocked,
    ("users", "rm"): _users_rm,
    ("budgets", "set"): _budgets_set,
    ("budgets", "list"): _budgets_list,
    ("budgets", "rm"): _budgets_rm,
}
