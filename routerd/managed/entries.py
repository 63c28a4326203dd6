"""Edits of managed entries, shared by the admin API and the CLI: add, update, upsert, remove.

Each works on the `Docs` of one change (`store.py`) and the configuration currently loaded (to
know which entries a human file owns). An entry defined in a human file is never changed here:
the attempt raises 409 `conflict` naming that file. Ids are unique across human and managed
files (the loader enforces it too). Timestamps are UTC RFC 3339 strings set here.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routerd.config.model import LoadedConfig, ManagedKind
from routerd.errors import ErrorCode, RouterdError
from routerd.managed.store import Docs

KEY_PREFIX = "sk-rd-"
ID_FIELD: dict[ManagedKind, str] = {
    "keys": "id",
    "users": "id",
    "budgets": "id",
    "pricing": "model",
}
NOUN: dict[ManagedKind, str] = {
    "keys": "key",
    "users": "user",
    "budgets": "budget",
    "pricing": "price",
}


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_secret() -> tuple[str, str]:
    """A new client key: (plaintext, to show once; `sha256:<hex>`, the only thing stored)."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return plaintext, "sha256:" + hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _loaded(current: LoadedConfig, kind: ManagedKind) -> Iterable[tuple[str, Path | None]]:
    if kind == "keys":
        return ((k.id, k.source) for k in current.keys)
    if kind == "users":
        return ((u.id, u.source) for u in current.users)
    if kind == "budgets":
        return ((b.id, b.source) for b in current.budgets)
    return ((p.model, p.source) for p in current.price_overrides)


def human_owner(docs: Docs, current: LoadedConfig, kind: ManagedKind, entry_id: str) -> Path | None:
    """The human file that defines `entry_id`, if one does (managed entries are not owned)."""
    for loaded_id, source in _loaded(current, kind):
        if loaded_id == entry_id and source != docs.paths[kind]:
            return source or Path("?")
    return None


def find(docs: Docs, kind: ManagedKind, entry_id: str) -> int | None:
    field = ID_FIELD[kind]
    for i, entry in enumerate(docs.entries(kind)):
        if entry.get(field) == entry_id:
            return i
    return None


def _conflict(kind: ManagedKind, entry_id: str, owner: Path) -> RouterdError:
    return RouterdError(
        ErrorCode.conflict,
        f"{NOUN[kind]} {entry_id!r} is defined in {owner}, a file routerd never writes; "
        "change it there (then reload)",
        details={"file": str(owner)},
    )


def _managed_index(docs: Docs, current: LoadedConfig, kind: ManagedKind, entry_id: str) -> int:
    index = find(docs, kind, entry_id)
    if index is not None:
        return index
    owner = human_owner(docs, current, kind, entry_id)
    if owner is not None:
        raise _conflict(kind, entry_id, owner)
    raise RouterdError(ErrorCode.not_found, f"no {NOUN[kind]} {entry_id!r}")


def add(docs: Docs, current: LoadedConfig, kind: ManagedKind, entry: dict[str, Any]) -> None:
    """Append a new entry; 409 if its id exists anywhere."""
    entry_id = entry[ID_FIELD[kind]]
    owner = human_owner(docs, current, kind, entry_id)
    if owner is not None:
        raise _conflict(kind, entry_id, owner)
    if find(docs, kind, entry_id) is not None:
        raise RouterdError(ErrorCode.conflict, f"{NOUN[kind]} {entry_id!r} already exists")
    stamp = now_text()
    entry["created_at"] = stamp
    if kind != "keys":
        entry["updated_at"] = stamp
    docs.entries(kind).append(entry)
    docs.mark(kind, len(docs.entries(kind)) - 1)


def update(
    docs: Docs, current: LoadedConfig, kind: ManagedKind, entry_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Set fields of a managed entry (a value of None removes the field); 404 / 409 otherwise."""
    index = _managed_index(docs, current, kind, entry_id)
    entry = docs.entries(kind)[index]
    for name, value in changes.items():
        if value is None:
            entry.pop(name, None)
        else:
            entry[name] = value
    if kind != "keys":
        entry["updated_at"] = now_text()
    docs.mark(kind, index)
    return entry


def upsert(docs: Docs, current: LoadedConfig, kind: ManagedKind, entry: dict[str, Any]) -> None:
    """Replace a managed entry (keeping its `created_at`) or add it; 409 if a human file owns it."""
    index = find(docs, kind, entry[ID_FIELD[kind]])
    if index is None:
        add(docs, current, kind, entry)
        return
    old = docs.entries(kind)[index]
    entry["created_at"] = old.get("created_at", now_text())
    if kind != "keys":
        entry["updated_at"] = now_text()
    docs.entries(kind)[index] = entry
    docs.mark(kind, index)


def remove(docs: Docs, current: LoadedConfig, kind: ManagedKind, entry_id: str) -> dict[str, Any]:
    """Delete a managed entry and return it; 404 / 409 otherwise."""
    index = _managed_index(docs, current, kind, entry_id)
    entry = docs.entries(kind).pop(index)
    docs.mark(kind)
    return entry


def ensure_user(docs: Docs, current: LoadedConfig, user_id: str) -> None:
    """Define `user_id` in the managed users file unless a users file defines it already (a new
    key's owner gets a user entry, as any-llm-gateway creates one)."""
    if find(docs, "users", user_id) is None and all(u.id != user_id for u in current.users):
        add(docs, current, "users", {"id": user_id})
