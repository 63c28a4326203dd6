"""The in-tree load generator: asyncio + one keep-alive aiohttp ClientSession per row.

Closed loop: `concurrency` workers each send a request, wait for the full answer, and send the
next, for a fixed duration after a short unmeasured warm phase. It runs in the bench process and
shares the CPU budget with whatever else is pinned to its core; its own CPU time is reported per
row so that a saturated generator is visible.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import aiohttp

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class RowResult:
    completed: int = 0
    sent: int = 0  # every request sent, warm phase included
    errors: int = 0
    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds; TTFT for stream rows
    first_error: str | None = None
    gen_cpu: float = 0.0  # CPU seconds of this process during the measured window
    server_cpu: float | None = None  # CPU seconds of the server under test, if known

    @property
    def rps(self) -> float:
        return self.completed / self.duration if self.duration else 0.0

    def pct(self, q: float) -> float:
        """The q-th percentile (nearest rank) in milliseconds."""
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        k = min(len(data) - 1, max(0, round(q / 100 * len(data) + 0.5) - 1))
        return data[k] * 1000.0


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all threads) from /proc, or None when unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


async def run_row(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    stream: bool,
    warm: float = 0.25,
    server_pid: int | None = None,
) -> RowResult:
    result = RowResult()
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    hdrs = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop_start = time.perf_counter()
        measure_start = loop_start + warm
        deadline = measure_start + duration
        marks: dict[str, float | None] = {}

        def note_error(msg: str, measured: bool) -> None:
            if measured:
                result.errors += 1
                if result.first_error is None:
                    result.first_error = msg

        async def one(measured: bool) -> None:
            t0 = time.perf_counter()
            result.sent += 1
            try:
                async with session.post(url, data=body, headers=hdrs) as resp:
                    if resp.status != 200:
                        text = (await resp.read())[:300].decode("utf-8", "replace")
                        note_error(f"HTTP {resp.status}: {text}", measured)
                        return
                    if not stream:
                        await resp.read()
                        if measured:
                            result.latencies.append(time.perf_counter() - t0)
                            result.completed += 1
                        return
                    first: float | None = None
                    done = False
                    async for line in resp.content:
                        if line.startswith(b"data:"):
                            if first is None:
                                first = time.perf_counter() - t0
                            if line.startswith(b"data: [DONE]"):
                                done = True
                    if first is None or not done:
                        note_error("stream ended without data frames or [DONE]", measured)
                    elif measured:
                        result.latencies.append(first)
                        result.completed += 1
            except Exception as exc:  # a benchmark counts failures, it does not stop on them
                note_error(f"{type(exc).__name__}: {exc}", measured)
                await asyncio.sleep(0.001)

        async def worker() -> None:
            while True:
                now = time.perf_counter()
                if now >= deadline:
                    return
                if now >= measure_start and "cpu0" not in marks:
                    marks["cpu0"] = time.process_time()
                    marks["srv0"] = proc_cpu_seconds(server_pid) if server_pid else None
                await one(now >= measure_start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = time.perf_counter()
        # Requests started before the deadline finish after it: count the window they ran in.
        result.duration = max(end - measure_start, 0.0)
        cpu0 = marks.get("cpu0")
        if cpu0 is not None:
            result.gen_cpu = time.process_time() - cpu0
            srv0 = marks.get("srv0")
            srv1 = proc_cpu_seconds(server_pid) if server_pid else None
            if srv0 is not None and srv1 is not None:
                result.server_cpu = srv1 - srv0
    return result
