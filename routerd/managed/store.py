"""The routerd-owned files in `state_dir` (keys, users, budgets, pricing): one change at a time,
validated as a whole configuration, written atomically.

A change (`ManagedStore.commit`):
1. takes the state lock: `fcntl.flock` on `state_dir/.lock`, so the CLI and the daemon (and two
   threads: each open file description is its own lock holder) never interleave;
2. removes temp files a writer that died before its rename left behind (we hold the lock, so
   they are orphans), and reads the current managed documents from disk;
3. lets the mutator edit them (it may refuse with a `RouterdError`: 404, 409, ...);
4. validates the WHOLE configuration with the edited documents in place (`load_all` with an
   overlay, then the caller's table build); a failure raises `ChangeRejected` and writes nothing;
5. writes each edited file atomically: temp file in the same directory, fsync, rename, fsync of
   the directory. A crash at any point leaves either the old or the new file, never a mix.

Human files are never written here. In the daemon the caller holds the gateway's reload lock
around all of this and swaps in the table the build produced (`Gateway.change`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from routerd.config.documents import DocumentCache, read_document
from routerd.config.load import ConfigError, ConfigProblem, load_all
from routerd.config.model import DaemonConfig, LoadedConfig, ManagedKind

KINDS: tuple[ManagedKind, ...] = ("keys", "users", "budgets", "pricing")
LOCK_NAME = ".lock"
_HEADER = (
    "# Managed by routerd: written by its admin API (/v1/{kind}) and `routerd {kind} ...`.\n"
    "# Entries here are loaded after the human files; do not edit while routerd or its CLI\n"
    "# writes (changes take the lock in .lock). Only key hashes are stored, never a key.\n"
)

T = TypeVar("T")
B = TypeVar("B")


@dataclass(frozen=True, slots=True)
class Focus:
    """The entry a change is about: where its validation problems point to the request."""

    kind: ManagedKind
    index: int


class ChangeRejected(Exception):
    """The configuration with the change applied is invalid; nothing was written."""

    def __init__(self, problems: list[ConfigProblem], focus: Focus | None) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
        self.focus = focus


@dataclass(slots=True)
class Docs:
    """The managed documents of one change, read under the lock; `changed` are written back."""

    paths: dict[ManagedKind, Path]
    data: dict[ManagedKind, dict[str, Any]]
    changed: set[ManagedKind] = field(default_factory=set)
    focus: Focus | None = None

    def entries(self, kind: ManagedKind) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.data[kind][kind]
        return items

    def mark(self, kind: ManagedKind, index: int | None = None) -> None:
        """Record that `kind` changed; `index` is the entry the request is about (if any)."""
        self.changed.add(kind)
        if index is not None:
            self.focus = Focus(kind, index)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync dir. Keeps the old mode."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def dump_document(kind: ManagedKind, doc: dict[str, Any]) -> bytes:
    """The header comment, then the document as JSON with one entry per line: valid YAML (and
    JSON after the comment), a one-line diff per changed entry in git, and parsed by orjson, so
    a change to a 10,000-key file costs milliseconds, not the seconds of a YAML round trip."""
    entries = doc.get(kind) or []
    lines = [orjson.dumps(entry).decode() for entry in entries]
    body = "{" + orjson.dumps(kind).decode() + ": [" + ",".join(f"\n  {x}" for x in lines)
    body += ("\n" if lines else "") + "]}\n"
    return (_HEADER.format(kind=kind) + body).encode("utf-8")


class ManagedStore:
    """The managed files of one `routerd.yaml` (its `state_dir`)."""

    def __init__(
        self, config_path: Path, state_dir: Path, documents: DocumentCache | None = None
    ) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.documents = documents  # the daemon's: validating a change skips unchanged files

    @classmethod
    def of(
        cls, daemon: DaemonConfig, documents: DocumentCache | None = None
    ) -> ManagedStore | None:
        """The store of a loaded daemon config; None when `state_dir` is not set."""
        if daemon.state_dir is None:
            return None
        return cls(daemon.path, daemon.state_dir, documents)

    def path(self, kind: ManagedKind) -> Path:
        return self.state_dir / f"{kind}.yaml"

    def read(self, kind: ManagedKind) -> dict[str, Any]:
        """The managed document of `kind` as on disk (`{kind: []}` when the file is missing)."""
        path = self.path(kind)
        if not path.exists():
            return {kind: []}
        try:
            raw = read_document(path)
        except ConfigError as exc:
            raise ChangeRejected(exc.problems, None) from None
        if raw is None:
            return {kind: []}
        if not isinstance(raw, dict) or not isinstance(raw.get(kind), list):
            problem = ConfigProblem(path, kind, f"expected a mapping with a `{kind}` list")
            raise ChangeRejected([problem], None)
        return raw

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state lock (blocking): one writer at a time across processes and threads."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _remove_orphans(self) -> None:
        for tmp in self.state_dir.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def commit(
        self, mutate: Callable[[Docs], T], build: Callable[[LoadedConfig], B]
    ) -> tuple[B, T]:
        """Run one change (see the module docstring); returns the build's result and the
        mutator's. Raises `ChangeRejected` (nothing written) or the mutator's own error."""
        with self.locked():
            self._remove_orphans()
            docs = Docs(
                paths={kind: self.path(kind) for kind in KINDS},
                data={kind: self.read(kind) for kind in KINDS},
            )
            result = mutate(docs)
            overlay = {self.path(kind): docs.data[kind] for kind in docs.changed}
            try:
                built = build(load_all(self.config_path, overlay, self.documents))
            except ConfigError as exc:
                raise ChangeRejected(exc.problems, docs.focus) from None
            except ValueError as exc:  # the table build: a price that is not exact
                problem = ConfigProblem(self.config_path, "", str(exc))
                raise ChangeRejected([problem], docs.focus) from None
            for kind in sorted(docs.changed, key=KINDS.index):
                atomic_write(self.path(kind), dump_document(kind, docs.data[kind]))
            return built, result
