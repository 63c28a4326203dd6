"""The process-wide state behind the app: the current table, journal, metrics, reload, drain.

The table is swapped by assigning one reference after a new one was fully built; requests read
`gateway.table` once at their start and keep that snapshot. Metrics and the journal outlive
reloads. Transports a new table no longer uses are closed after the in-flight grace.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from routerd.config.load import ConfigError, load_all
from routerd.metering.generations import GenerationCache
from routerd.metering.journal import JournalWriter
from routerd.metrics import Metrics
from routerd.providers.base import Transport
from routerd.routing.health import HealthRegistry
from routerd.table import RoutingTable, build_table, retired_transports

log = structlog.get_logger("routerd")


class Gateway:
    def __init__(self, config_path: Path, table: RoutingTable, metrics: Metrics) -> None:
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
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        metrics.config_reloaded(True, table.generation)

    @classmethod
    def load(cls, config_path: Path, metrics: Metrics) -> Gateway:
        config = load_all(config_path)
        return cls(config_path, build_table(config, 1, int(time.time())), metrics)

    async def reload(self) -> tuple[bool, str]:
        """Re-read every file; on any error keep the current table. Returns (ok, message)."""
        async with self._reload_lock:
            old = self.table
            try:
                config = await asyncio.to_thread(load_all, self.config_path)
                new = build_table(config, old.generation + 1, int(time.time()), previous=old)
            except (ConfigError, ValueError) as exc:
                self.metrics.config_reloaded(False, None)
                log.error("config_reload_failed", error=str(exc), generation=old.generation)
                return False, str(exc)
            self.table = new
            self.metrics.config_reloaded(True, new.generation)
            log.info("config_reloaded", generation=new.generation, warnings=list(config.warnings))
            self._close_later(retired_transports(old, new), old.config.daemon.timeouts.total)
            return True, f"generation {new.generation}"

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
