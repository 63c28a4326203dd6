"""The process-wide state behind the app: the current table, journal, metrics, reload, drain.

The table is swapped by assigning one reference after a new one was fully built; requests read
`gateway.table` once at their start and keep that snapshot. Metrics and the journal outlive
reloads. Transports a new table no longer uses are closed after the in-flight grace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import structlog

from routerd.config.load import ConfigError, DocumentCache, load_all
from routerd.config.model import LoadedConfig
from routerd.metering.generations import GenerationCache
from routerd.metering.journal import JournalWriter
from routerd.metering.ledger import Ledger
from routerd.metering.ratelimit import RateScope, refill
from routerd.metering.store import InMemoryStore, LedgerStore
from routerd.metrics import Metrics
from routerd.providers.base import Transport
from routerd.routing.health import HealthRegistry
from routerd.table import RoutingTable, build_table, retired_transports

log = structlog.get_logger("routerd")
T = TypeVar("T")
TableBuilder = Callable[[LoadedConfig], RoutingTable]


class Gateway:
    def __init__(
        self,
        config_path: Path,
        table: RoutingTable,
        metrics: Metrics,
        store: LedgerStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.table = table
        self.metrics = metrics
        self.draining = False
        self.ready = False
        self.generations = GenerationCache()
        self.health = HealthRegistry(on_state=metrics.deployment_state)  # survives reloads
        journal = table.config.daemon.journal
        self.journal = JournalWriter(
            journal.dir,
            fsync=journal.fsync,
            fsync_interval_seconds=journal.fsync_interval_seconds,
            queue_size=journal.queue_size,
            max_file_bytes=journal.max_file_bytes,
            on_written=metrics.journal_written,
            on_error=metrics.journal_error,
        )
        self.store: LedgerStore = store or InMemoryStore()
        self.ledger = Ledger(self.store, clock)
        self.ledger.use_rules(table.budgets)
        metrics.budgets_configured(table.budgets.values())
        self._reload_lock = asyncio.Lock()
        self.documents = DocumentCache()  # reloads re-read only the files that changed
        self.last_used: dict[str, datetime] = {}  # key id -> last request (rebuilt from journal)
        self._background: set[asyncio.Task[None]] = set()
        metrics.config_reloaded(True, table.generation)

    @classmethod
    def load(
        cls, config_path: Path, metrics: Metrics, clock: Callable[[], float] = time.time
    ) -> Gateway:
        documents = DocumentCache()
        config = load_all(config_path, None, documents)
        table = build_table(config, 1, int(time.time()))
        gateway = cls(config_path, table, metrics, clock=clock)
        gateway.documents = documents  # the first reload re-reads only what changed since
        return gateway

    async def rebuild_ledger(self) -> None:
        """Startup: spend, key usage and the last minute of rate limits from the journal."""
        table = self.table
        started = time.perf_counter()
        result = await self.ledger.rebuild(
            self.journal.directory, table.budgets.values(), [k.id for k in table.config.keys]
        )
        used: dict[str, tuple[RateScope, int, int]] = {}
        for entry in table.keys_by_hash.values():
            requests, tokens = result.recent.get(entry.config.id, (0, 0))
            for scope in entry.rate_scopes if requests else ():
                _, r, t = used.get(scope.scope_id, (scope, 0, 0))
                used[scope.scope_id] = (scope, r + requests, t + tokens)
        await refill(self.store, list(used.values()), self.ledger.clock().timestamp())
        for key_id, ts in result.last_seen.items():
            self.touch(key_id, datetime.fromisoformat(ts.replace("Z", "+00:00")))
        log.info(
            "ledger_rebuilt", files=result.files, lines=result.lines, skipped=result.skipped,
            seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip

    async def reload(self) -> tuple[bool, str]:
        """Re-read every file; on any error keep the current table. Returns (ok, message)."""
        async with self._reload_lock:
            old = self.table
            try:
                config = await asyncio.to_thread(load_all, self.config_path, None, self.documents)
                new = self._builder(old)(config)
            except (ConfigError, ValueError) as exc:
                self.metrics.config_reloaded(False, None)
                log.error("config_reload_failed", error=str(exc), generation=old.generation)
                return False, str(exc)
            try:
                await self._rebuild_new_budgets(new)
            except OSError as exc:
                self.metrics.config_reloaded(False, None)
                log.error("budget_rebuild_failed", error=str(exc), generation=old.generation)
                return False, f"cannot rebuild changed budgets from the journal: {exc}"
            # No await from here on: the swap and the ledger's rule set change together.
            self._swap(old, new)
            return True, f"generation {new.generation}"

    async def change(self, commit: Callable[[TableBuilder], tuple[RoutingTable, T]]) -> T:
        """Apply one managed-file change: `commit` (run in a thread) validates it by building the
        next table with the builder it is given, writes the files, and returns that table, which
        is swapped in exactly like a reload's. Serialized with reloads and other changes."""
        async with self._reload_lock:
            old = self.table
            new, result = await asyncio.to_thread(commit, self._builder(old))
            try:
                await self._rebuild_new_budgets(new)
            except OSError as exc:  # the files are written: serve them, say what is missing
                log.error("budget_rebuild_failed", error=str(exc), generation=new.generation)
            self._swap(old, new)
            return result

    async def _rebuild_new_budgets(self, new: RoutingTable) -> None:
        """Fill the counters of budgets the ledger does not know yet, before the swap."""
        await self.ledger.rebuild_for_reload(
            self.journal.directory, self.ledger.new_rules(new.budgets), self.journal.flush
        )

    def touch(self, key_id: str | None, ts: datetime) -> None:
        """Record a key's use (`last_used_at` of the admin API); the newest time wins."""
        if key_id is not None and (key_id not in self.last_used or self.last_used[key_id] < ts):
            self.last_used[key_id] = ts

    @staticmethod
    def _builder(old: RoutingTable) -> TableBuilder:
        def build(config: LoadedConfig) -> RoutingTable:
            return build_table(config, old.generation + 1, int(time.time()), previous=old)

        return build

    def _swap(self, old: RoutingTable, new: RoutingTable) -> None:
        """Install `new`; nothing here awaits, so the table and the budgets change together."""
        self.table = new
        self.ledger.use_rules(new.budgets)
        self.metrics.budgets_configured(new.budgets.values())
        self.metrics.config_reloaded(True, new.generation)
        log.info("config_reloaded", generation=new.generation, warnings=list(new.config.warnings))
        self._close_later(retired_transports(old, new), old.config.daemon.timeouts.total)

    def _close_later(self, transports: list[Transport], after: float | None) -> None:
        if not transports:
            return

        async def close() -> None:
            await asyncio.sleep(after or 600.0)
            for transport in transports:
                await transport.close()

        task = asyncio.get_running_loop().create_task(close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.journal.close()
        for provider in self.table.providers.values():
            await provider.transport.close()
