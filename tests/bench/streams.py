"""Paced streams: how many concurrent streams one core relays without dropping or delaying frames.

The paced upstream (`paced_upstream.py`) writes 20 chunks 5 ms apart and stamps each content
chunk with its monotonic write time (`T<ns>`). This client is a minimal HTTP/1.1 keep-alive
client on raw asyncio protocols (far cheaper than aiohttp per frame): per frame it only takes the
receive time and the stamps, and keeps the answer's last bytes to spot its end. After the trial
it compares, for every stamped frame, the gap it saw since the previous frame with the gap the
upstream sent (`jitter`), and counts frames that never came. A trial also records the CPU
seconds of the server under test and of this process, and how many frames were relayed.

A trial of N streams passes when nothing failed, no frame was lost, the p99 of |jitter| is
within `max_jitter_ms` (1 ms) and the upstream kept its pace (`Trial.passed`). `ladder`
runs N = 8, 16, 32 ... and `capacity` is the largest N that passes. On small VMs an idle vCPU
wakes up late (ms), so even the bare proxy may fail the absolute 1 ms criterion at small N:
`relative_capacity` is the largest N where a target stays within 1 ms of the bare proxy's own
jitter at the same N.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.bench.loadgen import proc_cpu_seconds

_STAMP = re.compile(rb"T(\d{6,}) ")
_END = b"0\r\n\r\n"


@dataclass
class Trial:
    streams: int
    completed: int = 0
    failed: int = 0
    lost_frames: int = 0
    jitter_ms: list[float] = field(default_factory=list)
    offered: float = float("nan")  # the upstream's frame rate over the nominal one (1 / pace)
    first_error: str | None = None
    frames: int = 0  # frames received, warm-up streams included (what the server relayed)
    seconds: float = 0.0
    server_cpu: float | None = None  # CPU seconds of the server under test over the trial
    client_cpu: float | None = None  # CPU seconds of this (client) process over the trial
    stamps: list[list[int]] = field(default_factory=list, repr=False)

    def finish(self, pace_ms: float) -> None:
        """Jitter of every measured stream, computed after the trial (not on the clock), and the
        frame rate the upstream actually offered (`offered`, 1.0 = one frame per pace)."""
        span = gaps = 0
        for flat in self.stamps:
            sent, got = flat[0::2], flat[1::2]
            self.jitter_ms += [
                abs((r1 - r0) - (s1 - s0)) / 1e6
                for (s0, s1), (r0, r1) in zip(
                    itertools.pairwise(sent), itertools.pairwise(got), strict=True
                )
            ]
            if len(sent) > 1:
                span, gaps = span + sent[-1] - sent[0], gaps + len(sent) - 1
        if span:
            self.offered = pace_ms * 1e6 * gaps / span
        self.stamps = []

    def jitter_p99(self) -> float:
        if not self.jitter_ms:
            return float("nan")
        data = sorted(self.jitter_ms)
        return data[min(len(data) - 1, int(0.99 * len(data)))]

    def passed(self, max_jitter_ms: float, min_offered: float = 0.95) -> bool:
        """Nothing failed or lost, jitter p99 within `max_jitter_ms`, and the upstream offered
        at least `min_offered` of the nominal frame rate: jitter alone misses a generator that
        falls behind (its gaps grow as sent and as seen alike)."""
        ok = self.completed > 0 and not self.failed and not self.lost_frames
        return ok and self.offered >= min_offered and self.jitter_p99() <= max_jitter_ms

    def server_us_per_frame(self) -> float | None:
        if self.server_cpu is None or not self.frames:
            return None
        return 1e6 * self.server_cpu / self.frames


class _Conn(asyncio.Protocol):
    """One keep-alive connection; `request()` sends a stream request and awaits its end.

    Cheap per frame: a 200 chunked answer is not buffered; each `data_received` takes its stamps
    (one regex pass over the new bytes), keeps the last few bytes to spot the terminating
    chunk and whether `[DONE]` was seen. Any other answer is buffered whole (errors only)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""  # the first bytes of the answer (status line; error text)
        self.tail = b""
        self.chunked = False
        self.seen_done = False
        self.buf = bytearray()  # the whole answer, when not a 200 chunked one
        self.stamps: list[int] = []  # sent ns, received ns, sent ns, ...
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        for m in _STAMP.finditer(data):
            self.stamps += (int(m.group(1)), now)
        if self.chunked:
            joined = self.tail + data
            self.seen_done = self.seen_done or b"data: [DONE]" in joined
            self.tail = joined[-16:]
            complete = self.tail.endswith(_END)
        else:
            self.buf += data
            complete = self._head_done()
        if complete and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _head_done(self) -> bool:
        """Buffering: once the head is in, a 200 chunked answer goes on unbuffered."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).lower()
        if not self.head and head.startswith(b"http/1.1 200") and b"chunked" in head:
            self.head, self.chunked = bytes(self.buf[:200]), True
            rest = bytes(self.buf[end + 4 :])
            self.buf.clear()
            self.seen_done = b"data: [DONE]" in rest
            self.tail = rest[-16:]
            return self.tail.endswith(_END)
        return self._complete()

    def _complete(self) -> bool:
        head, sep, body = bytes(self.buf).partition(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        return bool(sep) and (match is None or len(body) >= int(match.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("connection closed"))

    async def request(self, raw: bytes) -> tuple[bool, bytes, list[int]]:
        """(a 200 stream that ended with [DONE], the answer's first bytes, stamps)."""
        assert self.transport is not None
        self.head, self.tail, self.chunked, self.seen_done = b"", b"", False, False
        self.buf.clear()
        self.stamps = []
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        await asyncio.wait_for(self.done, 30)
        ok = self.chunked and self.seen_done
        return ok, self.head or bytes(self.buf[:200]), self.stamps


def _raw_request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}"]
    head += [f"{k}: {v}" for k, v in {"Content-Type": "application/json", **headers}.items()]
    head += [f"Content-Length: {len(body)}", "", ""]
    return host, port, "\r\n".join(head).encode() + body


def _account(
    trial: Trial, ok: bool, head: bytes, stamps: list[int], expected: int, measured: bool
) -> None:
    trial.frames += len(stamps) // 2 + ok
    if not measured:
        return
    if not ok:
        trial.failed += 1
        if trial.first_error is None:
            trial.first_error = head.decode(errors="replace")
        return
    trial.completed += 1
    trial.lost_frames += max(0, expected - len(stamps) // 2)
    trial.stamps.append(stamps)


async def trial(
    url: str,
    body: bytes,
    headers: dict[str, str],
    streams: int,
    seconds: float,
    chunks: int,
    server_pid: int | None = None,
    pace_ms: float = 5.0,
) -> Trial:
    """N connections, each streaming back to back for `seconds` (after one unmeasured stream).
    With `server_pid`, that process's CPU seconds over the trial go to `Trial.server_cpu`."""
    host, port, raw = _raw_request(url, body, headers)
    result = Trial(streams)
    loop = asyncio.get_running_loop()
    expected = chunks - 1  # every chunk but the final (empty, finish_reason) one is stamped

    async def worker(deadline: float) -> None:
        try:
            transport, conn = await loop.create_connection(_Conn, host, port)
            conn.transport = transport
        except OSError as exc:
            result.failed += 1
            result.first_error = result.first_error or f"connect: {exc}"
            return
        try:
            _account(result, *await conn.request(raw), expected, False)  # warm: not measured
            while time.monotonic() < deadline:
                _account(result, *await conn.request(raw), expected, True)
        except (OSError, TimeoutError) as exc:
            result.failed += 1
            result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
        finally:
            transport.close()

    cpu0 = _cpu(server_pid), _cpu(os.getpid())
    started = time.monotonic()
    await asyncio.gather(*(worker(started + seconds + 1.0) for _ in range(streams)))
    cpu1 = _cpu(server_pid), _cpu(os.getpid())
    result.seconds = time.monotonic() - started
    result.server_cpu = _delta(cpu0[0], cpu1[0])
    result.client_cpu = _delta(cpu0[1], cpu1[1])
    result.finish(pace_ms)
    return result


def _cpu(pid: int | None) -> float | None:
    return None if pid is None else proc_cpu_seconds(pid)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


LADDER = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


async def ladder(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    seconds: float,
    chunks: int,
    limit: int = 4096,
    give_up_ms: float = 50.0,
    server_pid: int | None = None,
    pace_ms: float = 5.0,
) -> list[Trial]:
    """Trials at N = 8, 16, 32 ... `limit`; stops after a trial that lost or failed streams,
    whose jitter p99 passed `give_up_ms` (the relay has collapsed) or whose upstream offered less
    than half the nominal frame rate (the generator has): bigger N says nothing new."""
    tried: list[Trial] = []
    for n in (n for n in LADDER if n <= limit):
        t = await trial(url, body, headers, n, seconds, chunks, server_pid, pace_ms)
        tried.append(t)
        if t.failed or t.lost_frames or not t.jitter_p99() <= give_up_ms or t.offered < 0.5:
            break
    return tried


def capacity(tried: list[Trial], max_jitter_ms: float = 1.0) -> int:
    """The largest N of consecutive passing ladder steps (0 when the first step fails)."""
    best = 0
    for t in tried:
        if not t.passed(max_jitter_ms):
            break
        best = t.streams
    return best


def relative_capacity(tried: list[Trial], base: list[Trial], slack_ms: float = 1.0) -> int:
    """The largest N (consecutive steps) with nothing lost or failed and a jitter p99 within
    `slack_ms` of `base` (the bare proxy) at the same N."""
    ref = {t.streams: t.jitter_p99() for t in base if not t.failed and not t.lost_frames}
    best = 0
    for t in tried:
        if t.streams not in ref or t.failed or t.lost_frames or t.completed == 0:
            break
        if not t.jitter_p99() <= ref[t.streams] + slack_ms:
            break
        best = t.streams
    return best
