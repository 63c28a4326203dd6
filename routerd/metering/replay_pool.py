"""Worker processes for a cold journal replay: parse closed days' files in parallel.

Owns deciding whether a pool pays (enough files and bytes), starting a
`concurrent.futures.ProcessPoolExecutor` with the `spawn` start method (never `fork`: the daemon
has threads and an event loop), and collecting one result per file. The parse function itself is
the caller's (a module-level pure function of the file's path, so it pickles by reference); the
caller merges the results in its own order, so the outcome is the same as parsing in-process.

Any failure of the pool (processes that cannot start, e.g. in a sandbox, a worker that dies, a
result that does not pickle) logs one `journal_replay_pool_failed` warning and gives no results:
the caller then parses those files in-process, so a pool never fails a startup.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """When to parse in worker processes: at least `min_files` files of `min_bytes` in all."""

    min_files: int = 2
    min_bytes: int = 64 * 1024 * 1024
    max_workers: int = 8


SEQUENTIAL = PoolPolicy(min_files=1 << 62)  # never a pool


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - not Linux


def _total_bytes(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue  # vanished: the parse says so
    return total


def workers_for(paths: Sequence[Path], policy: PoolPolicy) -> int:
    """How many worker processes to use for `paths`; 0 (parse in-process) when a pool won't pay."""
    if len(paths) < max(policy.min_files, 2) or _total_bytes(paths) < policy.min_bytes:
        return 0
    workers = min(usable_cpus(), len(paths), policy.max_workers)
    return workers if workers >= 2 else 0


class PoolBatch(Generic[T]):
    """Files being parsed in worker processes; `results` waits for them, `close` stops the pool."""

    def __init__(self, parse: Callable[[Path], T], paths: Sequence[Path], workers: int) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._futures: dict[Path, Future[T]] = {}
        if not paths:
            return
        try:  # imported here: a daemon that never starts a pool does not carry multiprocessing
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(workers, mp_context=context)
            self._futures = {path: self._executor.submit(parse, path) for path in paths}
        except Exception as exc:  # any pool failure: parse in-process instead
            self._failed(exc, len(paths), workers)

    def results(self) -> dict[Path, T]:
        """Every file's result, or none at all if the pool failed (then the caller parses)."""
        try:
            return {path: future.result() for path, future in self._futures.items()}
        except Exception as exc:  # any pool failure: parse in-process instead
            self._failed(exc, len(self._futures), 0)
            return {}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _failed(self, exc: Exception, files: int, workers: int) -> None:
        log.warning(
            "journal_replay_pool_failed", files=files, workers=workers,
            error=f"{type(exc).__name__}: {exc}", fallback="parsing in-process",
        )  # fmt: skip
        self._futures = {}
        self.close()


def start(parse: Callable[[Path], T], paths: Sequence[Path], policy: PoolPolicy) -> PoolBatch[T]:
    """Start parsing `paths` in worker processes if the policy says it pays (else no pool)."""
    workers = workers_for(paths, policy)
    return PoolBatch(parse, paths if workers else (), workers)
