"""The measuring phases of one bench run, each over a shared `Bench` (servers, URLs, CPUs).

- `rounds`: interleaved throughput/latency rows (wrk, else the in-tree generator) and stream
  time-to-first-token rows (in-tree generator, concurrency 1);
- `paced`: paced-stream capacity per target (`streams.capacity`);
- `top_up`: load routerd until it has served N requests (RSS rows);
- `profile`: py-spy on routerd while wrk drives the passthrough path.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.bench import profile as pyspy
from tests.bench import streams, wrk
from tests.bench.config import API_KEY, MODEL, PACED_MODEL
from tests.bench.loadgen import proc_cpu_seconds, run_row
from tests.bench.procs import Proc, rss_mb

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = orjson.dumps(
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 16,
    }
)
STREAM = orjson.dumps({**orjson.loads(CHAT), "stream": True})
PACED = orjson.dumps({**orjson.loads(CHAT), "model": PACED_MODEL, "stream": True})
MESSAGES = orjson.dumps(
    {
        "model": MODEL,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello in five words."}],
    }
)


@dataclass
class Sample:
    rps: float
    p50: float
    p99: float
    errors: int
    first_error: str | None
    gen_cpu_pct: float
    srv_cpu_pct: float | None
    sent: int


@dataclass
class Bench:
    tmp: Path
    procs: dict[str, Proc]
    ports: dict[str, int]
    gen_cpu: int | None
    use_wrk: bool
    duration: float
    routerd_sent: int = 0
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    scripts: dict[str, Path] = field(default_factory=dict)
    rss_trace: list[tuple[int, float]] = field(default_factory=list)  # (requests sent, MB)

    def url(self, target: str, path: str = "/v1/chat/completions") -> str:
        port = self.ports["upstream" if target == "direct" else target]
        return f"http://127.0.0.1:{port}{path}"

    def headers(self, target: str) -> dict[str, str]:
        return AUTH if target == "routerd" else {}

    def pid(self, target: str) -> int:
        return self.procs["upstream" if target == "direct" else target].pid

    def check(self) -> None:
        for proc in self.procs.values():
            proc.check()

    def median(self, key: str, attr: str) -> float:
        vals = [getattr(s, attr) for s in self.samples.get(key, []) if getattr(s, attr) is not None]
        return statistics.median(vals) if vals else float("nan")


def rows_for(concurrency: list[int]) -> list[tuple[str, int]]:
    return [("chat", c) for c in concurrency] + [("messages", c) for c in concurrency]


async def measure(b: Bench, target: str, mode: str, conc: int, seconds: float) -> Sample:
    """One throughput row: `mode` chat (passthrough) or messages (Anthropic ingress, routerd)."""
    b.check()
    messages = mode == "messages"
    body, path = (MESSAGES, "/v1/messages") if messages else (CHAT, "/v1/chat/completions")
    url, headers, pid = b.url(target, path), b.headers(target), b.pid(target)
    if b.use_wrk:
        name = f"{target}-{mode}"
        if name not in b.scripts:
            b.scripts[name] = wrk.write_script(b.tmp, name, body, headers)
        srv0 = proc_cpu_seconds(pid)
        res = await asyncio.to_thread(
            wrk.run,
            url,
            b.scripts[name],
            concurrency=conc,
            seconds=max(1, round(seconds)),
            cpu=b.gen_cpu,
        )
        srv1 = proc_cpu_seconds(pid)
        srv = 100 * (srv1 - srv0) / res.seconds if srv0 is not None and srv1 is not None else None
        sample = Sample(
            res.rps, res.p50_ms, res.p99_ms, res.errors, res.error_detail or None,
            100 * res.cpu_seconds / res.seconds, srv, res.requests,
        )  # fmt: skip
    else:
        row = await run_row(
            url, body, headers, concurrency=conc, duration=seconds, stream=False, server_pid=pid
        )
        sample = _from_row(row)
    if target == "routerd":
        b.routerd_sent += sample.sent
    return sample


def _from_row(row: Any) -> Sample:
    srv = None
    if row.server_cpu is not None and row.duration:
        srv = 100 * row.server_cpu / row.duration
    return Sample(
        row.rps, row.pct(50), row.pct(99), row.errors, row.first_error,
        100 * row.gen_cpu / row.duration if row.duration else 0.0, srv, row.sent,
    )  # fmt: skip


async def ttft(b: Bench, target: str, seconds: float) -> Sample:
    b.check()
    row = await run_row(
        b.url(target), STREAM, b.headers(target), concurrency=1, duration=seconds, stream=True,
        server_pid=b.pid(target),
    )  # fmt: skip
    if target == "routerd":
        b.routerd_sent += row.sent
    return _from_row(row)


def _targets(mode: str) -> tuple[str, ...]:
    return ("routerd",) if mode == "messages" else ("direct", "bare", "routerd")


async def rounds(b: Bench, concurrency: list[int], n: int) -> None:
    print("warming up ...", file=sys.stderr, flush=True)
    for target in ("direct", "bare", "routerd"):
        await measure(b, target, "chat", max(concurrency), 1.0)
        await ttft(b, target, 0.5)
    await measure(b, "routerd", "messages", max(concurrency), 1.0)
    for rnd in range(n):
        print(f"round {rnd + 1}/{n} ...", file=sys.stderr, flush=True)
        for mode, conc in rows_for(concurrency):
            for target in _targets(mode):
                sample = await measure(b, target, mode, conc, b.duration)
                b.samples.setdefault(f"{target} {mode} {conc}", []).append(sample)
        for target in ("direct", "bare", "routerd"):
            sample = await ttft(b, target, b.duration)
            b.samples.setdefault(f"{target} ttft 1", []).append(sample)


def paced_url(b: Bench, target: str) -> str:
    """Direct: the paced upstream's port (`paced_upstream.py`, in this process); bare: its
    `/paced/` route to that port; routerd: the paced model (a provider at that port)."""
    if target == "direct" and "paced" in b.ports:
        return f"http://127.0.0.1:{b.ports['paced']}/v1/chat/completions"
    if target == "bare" and "paced" in b.ports:
        return b.url(target, "/paced/v1/chat/completions")
    return b.url(target)


async def paced(
    b: Bench, seconds: float, chunks: int, limit: int, pace_ms: float = 5.0
) -> dict[str, list[streams.Trial]]:
    out = {}
    for target in ("direct", "bare", "routerd"):
        print(f"paced streams: {target} ...", file=sys.stderr, flush=True)
        b.check()
        tried = await streams.ladder(
            paced_url(b, target), PACED, b.headers(target), seconds=seconds, chunks=chunks,
            limit=limit, pace_ms=pace_ms,
            server_pid=None if target == "direct" else b.pid(target),  # direct: this process
        )  # fmt: skip
        if target == "routerd":
            b.routerd_sent += sum(t.completed + t.failed + t.streams for t in tried)
        out[target] = tried
    return out


async def top_up(b: Bench, total: int, chunk_seconds: int = 30) -> None:
    """Drive routerd (passthrough, concurrency 16) until it has been sent `total` requests."""
    while b.routerd_sent < total:
        left = total - b.routerd_sent
        rps = b.median("routerd chat 16", "rps")
        rps = rps if rps == rps and rps > 0 else 1000.0
        seconds = max(1, min(chunk_seconds, round(left / rps) + 1))
        print(f"  {b.routerd_sent} requests so far, {seconds} s more ...", file=sys.stderr)
        sample = await measure(b, "routerd", "chat", 16, seconds)
        mb = rss_mb(b.pid("routerd"))
        if mb is not None:
            b.rss_trace.append((b.routerd_sent, mb))
        if sample.errors:
            b.samples.setdefault("routerd top-up errors", []).append(sample)


async def profile(
    b: Bench, seconds: int, raw: Path, n: int = 15
) -> tuple[int, list[tuple[str, int]]]:
    proc = pyspy.record(b.pid("routerd"), seconds, raw, b.gen_cpu)
    await asyncio.sleep(0.5)  # let py-spy attach
    await measure(b, "routerd", "chat", 16, seconds)
    out, _ = await asyncio.to_thread(proc.communicate)
    if proc.returncode != 0:
        raise RuntimeError(f"py-spy failed: {out.decode(errors='replace')[-500:]}")
    return pyspy.top_self(raw, n)
